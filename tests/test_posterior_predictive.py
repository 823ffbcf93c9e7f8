"""``Fit.posterior_predictive`` and ``to_arviz(posterior_predictive=...)``: replicated data
from each draw's mixture, with ArviZ's names, so that the installed ArviZ's PPC plot runs."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.stats import norm

import dpgmm_ppl
from dpgmm_ppl._arviz_compat import arviz, is_datatree
from dpgmm_ppl.predictive import draw_indices
from dpgmm_ppl.result import Fit

#: Tiny runs of the three backends.
SMALL_OPTIONS = {
    "map": {"num_steps": 300},
    "svi": {"num_steps": 300, "num_samples": 60},
    "nuts": {"num_warmup": 60, "num_samples": 60, "num_init_steps": 50, "max_tree_depth": 5},
}


def _group(data, name):
    return data[name] if is_datatree() else getattr(data, name)


def _groups(data):
    return set(data.children) if is_datatree() else set(data.groups())


def mixture_fit(weights, loc, scale, *, num_draws=50, num_points=200, scale_tril=None):
    """A fit whose every draw of chain c is the mixture ``weights[c], loc[c], scale[c]``."""
    def per_draw(value):
        value = np.asarray(value, np.float32)
        return np.repeat(value[:, None], num_draws, axis=1)

    num_chains = len(weights)
    samples = {"alpha": np.ones((num_chains, num_draws), np.float32),
               "weights": per_draw(weights), "loc": per_draw(loc), "scale": per_draw(scale)}
    if scale_tril is not None:
        samples["scale_tril"] = per_draw(scale_tril)
    dim = np.ndim(loc) - 2
    data = np.zeros((num_points,) + (np.shape(loc)[-1:] if dim else ()), np.float32)
    return Fit("nuts", samples, {"lp": np.zeros((num_chains, num_draws))}, data,
               np.shape(weights)[-1], dpgmm_ppl.Priors(),
               covariance="full" if scale_tril is not None else "diag")


def test_replicates_have_the_mixtures_mean_and_variance_chain_by_chain():
    weights = np.array([[0.3, 0.7], [0.8, 0.2]])
    loc, scale = np.array([[-2.0, 3.0], [1.0, 5.0]]), np.array([[0.5, 1.5], [1.0, 0.3]])
    fit = mixture_fit(weights, loc, scale)
    replicates = fit.posterior_predictive(rng_key=3)["obs"]
    assert replicates.shape == (2, 50, 200) and replicates.dtype == np.float32
    for chain in range(2):
        values = replicates[chain].ravel().astype(np.float64)
        w, m, s = weights[chain], loc[chain], scale[chain]
        mean = np.sum(w * m)
        variance = np.sum(w * (s**2 + m**2)) - mean**2
        fourth = np.sum(w * ((m - mean) ** 4 + 6 * (m - mean) ** 2 * s**2 + 3 * s**4))
        n = values.size  # independent points: one mixture draw per point
        assert abs(values.mean() - mean) < 5 * np.sqrt(variance / n)
        assert abs(values.var() - variance) < 5 * np.sqrt((fourth - variance**2) / n)
        # The mixture's distribution function at a point between the two components.
        share = np.sum(w * norm.cdf((0.5 - m) / s))
        assert abs(np.mean(values < 0.5) - share) < 5 * np.sqrt(share * (1 - share) / n)


def test_vector_replicates_have_the_mixtures_covariance():
    corr = np.linalg.cholesky(np.array([[1.0, 0.8], [0.8, 1.0]]))
    scale = np.array([[[1.0, 0.5], [0.3, 2.0]]])
    tril = scale[..., None] * corr
    weights, loc = np.array([[0.4, 0.6]]), np.array([[[-3.0, 0.0], [2.0, 1.0]]])
    fit = mixture_fit(weights, loc, scale, scale_tril=tril, num_points=300)
    values = fit.posterior_predictive(rng_key=1)["obs"]
    assert values.shape == (1, 50, 300, 2)
    values = values.reshape(-1, 2).astype(np.float64)
    w = weights[0][:, None, None]
    mean = np.sum(weights[0][:, None] * loc[0], axis=0)
    second = np.sum(w * (tril[0] @ np.swapaxes(tril[0], -1, -2)
                         + loc[0][:, :, None] * loc[0][:, None, :]), axis=0)
    covariance = second - np.outer(mean, mean)
    n = values.shape[0]
    assert np.all(np.abs(values.mean(axis=0) - mean) < 5 * np.sqrt(np.diag(covariance) / n))
    # Entries of the sample covariance: standard error at most sqrt(E[(xy)^2] / n), bounded
    # through the fourth moments estimated from the replicates.
    centred = values - mean
    products = centred[:, :, None] * centred[:, None, :]
    error = np.sqrt(products.var(axis=0) / n)
    np.testing.assert_array_less(np.abs(np.cov(values.T) - covariance), 5 * error)


def test_the_same_key_gives_the_same_replicates_and_num_samples_picks_draws():
    rng = np.random.default_rng(0)
    loc = np.arange(2 * 10, dtype=np.float32).reshape(2, 10, 1) * 10.0
    fit = Fit("nuts", {"alpha": np.ones((2, 10)), "weights": np.ones((2, 10, 1)), "loc": loc,
                       "scale": np.full((2, 10, 1), 1e-3)},
              {"lp": rng.normal(size=(2, 10))}, np.zeros(7, np.float32), 1, dpgmm_ppl.Priors())
    first, again = fit.posterior_predictive(4)["obs"], fit.posterior_predictive(4)["obs"]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, fit.posterior_predictive(5)["obs"])
    # Each replicate sits at its own draw's mean: fewer replicates take spread draws ...
    fewer = fit.posterior_predictive(4, num_samples=4)["obs"]
    np.testing.assert_allclose(fewer.mean(axis=-1), loc[:, [0, 2, 5, 7], 0], atol=0.01)
    # ... and more repeat them (a MAP restart's one draw, replicated).
    more = fit.posterior_predictive(4, num_samples=25)["obs"]
    assert draw_indices(10, 25).tolist()[:6] == [0, 0, 0, 1, 1, 2]
    np.testing.assert_allclose(more.mean(axis=-1), loc[:, draw_indices(10, 25), 0], atol=0.01)


@pytest.mark.parametrize("bad, error, words", [
    ({"rng_key": True}, TypeError, "rng_key must be an int"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_samples": 2.5}, TypeError, "num_samples"),
])
def test_bad_arguments_are_refused(bad, error, words):
    fit = mixture_fit(np.array([[1.0]]), np.array([[0.0]]), np.array([[1.0]]), num_draws=2)
    with pytest.raises(error, match=words):
        fit.posterior_predictive(**bad)


def test_to_arviz_takes_true_or_the_replicates_and_refuses_anything_else():
    fit = mixture_fit(np.array([[0.5, 0.5]]), np.array([[-1.0, 1.0]]), np.array([[1.0, 1.0]]),
                      num_draws=4, num_points=9)
    assert "posterior_predictive" not in _groups(fit.to_arviz())
    data = fit.to_arviz(posterior_predictive=True)
    predictive = _group(data, "posterior_predictive")["obs"]
    assert predictive.dims == ("chain", "draw", "obs_id")
    assert _group(data, "observed_data")["obs"].dims == ("obs_id",)
    np.testing.assert_array_equal(predictive.values, fit.posterior_predictive()["obs"])
    given = fit.posterior_predictive(rng_key=2, num_samples=6)
    np.testing.assert_array_equal(
        _group(fit.to_arviz(posterior_predictive=given), "posterior_predictive")["obs"].values,
        given["obs"])
    with pytest.raises(TypeError, match="posterior_predictive must be True, False or the dict"):
        fit.to_arviz(posterior_predictive="yes")
    with pytest.raises(ValueError, match=r"must have shape \(1, num_samples, 9\)"):
        fit.to_arviz(posterior_predictive={"obs": np.zeros((1, 4, 8))})


@pytest.fixture(scope="module", params=sorted(SMALL_OPTIONS))
def fitted(request):
    rng = np.random.default_rng(8)
    data = np.concatenate([rng.normal(-3, 0.8, 40), rng.normal(2.5, 1.0, 30)]).astype(np.float32)
    return dpgmm_ppl.fit(data, backend=request.param, num_components=3, num_chains=2,
                         rng_key=1, progress_bar=False, **SMALL_OPTIONS[request.param])


@pytest.mark.filterwarnings("ignore:MAP kept")
def test_the_installed_arviz_draws_the_posterior_predictive_check(fitted):
    """``az.plot_ppc`` on ArviZ 0.x; on 1.x, which has no ``plot_ppc``, ``az.plot_ppc_dist``."""
    az = arviz()
    num_samples = 20 if fitted.backend == "map" else None  # one draw per restart otherwise
    data = fitted.to_arviz(
        posterior_predictive=fitted.posterior_predictive(num_samples=num_samples))
    predictive = _group(data, "posterior_predictive")["obs"]
    assert predictive.shape == (2, num_samples or fitted.num_draws, fitted.data.shape[0])
    if is_datatree():
        assert not hasattr(az, "plot_ppc")
        az.plot_ppc_dist(data, num_samples=10)
    else:
        az.plot_ppc(data, num_pp_samples=10)
    assert plt.get_fignums()
    plt.close("all")
