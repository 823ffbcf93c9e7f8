"""MAP on small real data: the objective, restart selection, the concentration
and the warning for crowded fits (slow, except the quick checks at the top).

The statistical checks compare MAP with two independent answers fitted in
the same test: NUTS's posterior predictive on the same model, and
scikit-learn's ``BayesianGaussianMixture`` (variational, Dirichlet-process
weights) on the same cross-validation folds.
"""

import itertools
import warnings

import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl import datasets
from dpgmm_ppl.infer.map import KEPT_WEIGHT

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.mixture import BayesianGaussianMixture  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

FLOAT32_TINY = float(np.finfo(np.float32).tiny)


def _kept(fit, threshold):
    """Components above ``threshold`` weight, per restart."""
    return np.sum(fit.samples["weights"][:, 0] > threshold, axis=-1)


def test_crowded_fit_warns_and_names_both_remedies():
    # Four separated groups and K = 2: both components carry weight.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, 0.3, 40) for m in (-9.0, -3.0, 3.0, 9.0)])
    with pytest.warns(UserWarning, match=r"kept 2 of 2 components") as caught:
        dpgmm_ppl.fit(x, num_components=2, num_steps=300)
    message = str(caught[0].message)
    assert "Priors(scale_rate=" in message and "num_components" in message
    # One component is always kept: no warning for it.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dpgmm_ppl.fit(x, num_components=1, num_steps=50)


def test_objective_is_checked_before_anything_is_traced():
    with pytest.raises(ValueError, match=r"^objective must be one of \('occam', 'unconstrained', 'constrained'\), got 'mode'$"):
        dpgmm_ppl.fit(np.arange(10.0), objective="mode")


@pytest.fixture(scope="module")
def galaxies_restarts():
    x = datasets.galaxies().data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = dpgmm_ppl.fit(x, num_chains=8, rng_key=0)
    return x, fit, caught


@pytest.mark.slow
def test_galaxies_every_restart_keeps_several_components(galaxies_restarts):
    """Defaults, 8 restarts: every restart keeps at least 3 components above
    2% weight (with ``objective="constrained"`` 7 of 8 kept one), every
    ``lp`` is finite, the best restart is the one with the highest
    objective, and no crowding warning."""
    _, fit, caught = galaxies_restarts
    assert np.all(_kept(fit, 0.02) >= 3), _kept(fit, 0.02)
    objective = fit.sample_stats["objective"][:, 0]
    assert np.all(np.isfinite(fit.sample_stats["lp"]))
    assert fit.best_chain == int(np.argmax(objective))
    assert not [w for w in caught if "components above" in str(w.message)]


@pytest.mark.slow
@pytest.mark.xla_optimized  # a NUTS chain of 600 iterations: faster with XLA's passes
def test_galaxies_density_is_close_to_the_posterior_predictive(galaxies_restarts):
    """The chosen restart's mean log density at the data within 0.15 nats per
    point of NUTS's posterior predictive (K = 10, one chain of 300 + 300). The
    Monte-Carlo error of NUTS's mean over 82 points is below 0.01 nats
    (measured 2026-12-06: MAP minus NUTS 0.078 with one chain, 0.093 with two).

    Ten components, not 20, for the suite's time: with this short warmup NUTS
    ran 900 leapfrog steps a draw at 20 against 98 at 10 (63 s against 15 s),
    and the predictive density at the data differed by 0.015 nats per point
    (measured 2026-12-04).
    """
    x, fit, _ = galaxies_restarts
    nuts = dpgmm_ppl.fit(x, backend="nuts", num_components=10, num_chains=1, rng_key=0,
                         num_warmup=300, num_samples=300)
    gap = float(np.mean(fit.log_predictive_density(x)) - np.mean(nuts.log_predictive_density(x)))
    print("MAP minus NUTS, nats per point:", round(gap, 4))
    assert abs(gap) < 0.15


@pytest.mark.slow
def test_lp_is_finite_for_every_restart_at_fifty_components():
    x = datasets.galaxies().data
    fit = dpgmm_ppl.fit(x, num_components=50, num_chains=4, rng_key=1, num_steps=3_000)
    assert fit.samples["weights"].dtype == np.float32
    assert np.all(np.isfinite(fit.sample_stats["lp"])), fit.sample_stats["lp"]
    assert np.all(np.isfinite(fit.sample_stats["log_joint"]))


@pytest.mark.slow
def test_constrained_objective_pins_alpha_at_the_float32_floor():
    """The cause of the concentration that did not depend on the data.

    Under ``objective="constrained"`` the tail weights run down to float32's
    smallest normal number; the sticks' ``log(1 - v_k)`` then sum to
    ``log w_K = log(tiny)`` and alpha's optimum under the Gamma(1, 1) prior
    is ``(K - 1) / (1 - log(tiny))`` = 0.27169 for K = 25, on any data.
    """
    floor = 24 / (1.0 - np.log(FLOAT32_TINY))
    x = datasets.galaxies().data
    fit = dpgmm_ppl.fit(x, objective="constrained", num_steps=3_000)
    assert abs(float(fit.samples["alpha"][0, 0]) - floor) < 1e-3 * floor
    assert fit.best_chain == int(np.argmax(fit.sample_stats["log_joint"][:, 0]))


def _five_kinds_of_data():
    rng = np.random.default_rng(3)
    faithful = datasets.old_faithful().data
    centres = np.array([[-3.0, 0.0], [2.0, 2.0], [2.0, -3.0]])
    blobs = np.concatenate([rng.normal(c, 0.7, (80, 2)) for c in centres])
    constant = np.c_[rng.normal(size=40), np.full(40, 7.0)]
    integers = rng.integers(0, 10, size=(40, 2)).astype(np.float64)
    return {"faithful": faithful, "blobs": blobs, "constant column": constant,
            "integers": integers}


@pytest.mark.slow
def test_alpha_depends_on_the_data():
    """K = 25 on 2-D data: Old Faithful with two keys, a 240-point 2-D set, a
    40-row set with a constant column, a 40-row integer set. Before the
    objective changed, all five gave alpha = 0.27169 (and lp -inf)."""
    floor = 24 / (1.0 - np.log(FLOAT32_TINY))
    alphas = {}
    for name, x in _five_kinds_of_data().items():
        keys = (0, 1) if name == "faithful" else (0,)
        for key in keys:
            fit = dpgmm_ppl.fit(x, rng_key=key, num_steps=3_000)
            alphas[name, key] = float(fit.samples["alpha"][0, 0])
            assert np.all(np.isfinite(fit.sample_stats["lp"]))
    print(alphas)
    assert all(abs(a - floor) > 0.01 for a in alphas.values())
    distinct = [a for (name, key), a in alphas.items() if key == 0]
    for a, b in itertools.combinations(distinct, 2):
        assert abs(a - b) > 0.01, alphas


def _cross_validated(x, covariance, num_folds=5):
    """Mean held-out log density per point of MAP (defaults) and of
    ``BayesianGaussianMixture``, on the same folds, and MAP's kept components."""
    x = np.asarray(x, np.float64)
    rows = x[:, None] if x.ndim == 1 else x
    ours, theirs, kept = [], [], []
    for train, test in KFold(num_folds, shuffle=True, random_state=0).split(rows):
        fit = dpgmm_ppl.fit(x[train], covariance=covariance)
        ours.append(np.mean(fit.log_predictive_density(x[test])))
        kept.append(int(_kept(fit, KEPT_WEIGHT)[fit.best_chain]))
        baseline = BayesianGaussianMixture(
            weight_concentration_prior_type="dirichlet_process", n_components=25,
            max_iter=1000, random_state=0,
        ).fit(rows[train])
        theirs.append(np.mean(baseline.score_samples(rows[test])))
    print(f"MAP {np.mean(ours):.3f} {np.round(ours, 3)}; "
          f"BayesianGaussianMixture {np.mean(theirs):.3f} {np.round(theirs, 3)}; kept {kept}")
    return float(np.mean(ours)), float(np.mean(theirs)), kept


@pytest.mark.slow
@pytest.mark.xla_optimized  # five folds of 10,000 steps: 29 s against 37 s unoptimised (2026-12-06)
@pytest.mark.parametrize(
    ("name", "covariance"),
    [
        ("galaxies", "diag"),
        ("old_faithful", "diag"),
        ("iris", "full"),
    ],
)
def test_cross_validated_heldout_density_matches_bayesian_gaussian_mixture(
    name, covariance
):
    """5-fold held-out log density of MAP >= that of scikit-learn's
    ``BayesianGaussianMixture`` minus 0.05 nats per point; on iris (4-D, three
    overlapping groups, full covariances) at most 6 components above 1%.
    Measured at the default prior (scale rate = the spread): galaxies -9.48
    against -9.69, Old Faithful -4.23 against -4.28, iris -1.71 with 2 to 5
    components against -2.17. At half the spread, the default before, iris
    gave -2.70 with 7 or 8 (with the objective of the simplex, -3.78 with 17)."""
    x = load_iris().data if name == "iris" else getattr(datasets, name)().data
    ours, theirs, kept = _cross_validated(x, covariance)
    assert ours >= theirs - 0.05
    if name == "iris":
        assert max(kept) <= 6
