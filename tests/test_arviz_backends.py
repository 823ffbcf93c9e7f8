"""Every backend's ArviZ output passes ArviZ's own tools, on whichever ArviZ line is installed."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.special import logsumexp

import dpgmm_ppl
from dpgmm_ppl._arviz_compat import arviz, is_datatree
from dpgmm_ppl.infer import BACKENDS

SMALL_OPTIONS = {
    "map": {"num_steps": 300},
    "svi": {"num_steps": 400, "num_samples": 200},
    "nuts": {"num_warmup": 150, "num_samples": 150},
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(8)
    return np.concatenate([rng.normal(-3, 0.8, 70), rng.normal(2.5, 1.0, 50)]).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(SMALL_OPTIONS))
def fitted(request, data):
    if request.param not in BACKENDS:
        pytest.fail(f"backend {request.param!r} is not registered")
    fit = dpgmm_ppl.fit(data, backend=request.param, num_components=3, num_chains=2,
                        rng_key=1, **SMALL_OPTIONS[request.param])
    return fit, fit.to_arviz()


def _group(tree, name):
    return tree[name] if is_datatree() else getattr(tree, name)


def test_summary_reports_the_samples(fitted):
    fit, idata = fitted
    summary = arviz().summary(idata, var_names=["alpha"], kind="stats", round_to="none") \
        if not is_datatree() else arviz().summary(idata, var_names=["alpha"], kind="stats")
    mean = float(np.asarray(summary["mean"], dtype=float)[0])
    np.testing.assert_allclose(mean, fit.samples["alpha"].mean(), rtol=1e-3, atol=1e-2)
    posterior = _group(idata, "posterior")
    assert posterior["weights"].dims == ("chain", "draw", "component")


def test_sample_stats_use_arviz_names(fitted):
    fit, idata = fitted
    stats = _group(idata, "sample_stats")
    expected = {"lp"} | ({"diverging", "acceptance_rate", "n_steps", "tree_depth", "step_size"}
                         if fit.backend == "nuts" else {"loss"})
    assert expected <= set(stats.data_vars)
    assert ("optimization" in (idata.children if is_datatree() else idata.groups())) == (
        fit.backend != "nuts"
    )


def test_loo_agrees_with_the_pointwise_log_likelihood(fitted):
    fit, idata = fitted
    if fit.backend == "map":
        # One draw per restart: no LOO, but the pointwise log-likelihood is
        # each restart's own log density of the data.
        pointwise = _group(idata, "log_likelihood")["obs"].values
        for chain in range(fit.num_chains):
            expected = fit.log_predictive_density(fit.data, chain=chain)
            np.testing.assert_allclose(pointwise[chain, 0], expected, rtol=1e-5)
        return
    loo = arviz().loo(idata)
    elpd = float(loo["elpd_loo"] if not is_datatree() else loo.elpd)
    pointwise = _group(idata, "log_likelihood")["obs"].values.reshape(-1, fit.data.shape[0])
    lppd = float(np.sum(logsumexp(pointwise, axis=0) - np.log(pointwise.shape[0])))
    # elpd_loo = lppd - p_loo, with p_loo about the number of effective parameters (< 12 here).
    assert lppd - 12.0 < elpd < lppd + 1e-6


def test_trace_plot_draws_every_site(fitted):
    fit, idata = fitted
    if is_datatree():
        collection = arviz().plot_trace_dist(idata, var_names=["alpha", "loc"])
        assert collection is not None and len(plt.get_fignums()) >= 1
    else:
        axes = arviz().plot_trace(idata, var_names=["alpha", "loc"])
        assert axes.shape == (2, 2)
    plt.close("all")
