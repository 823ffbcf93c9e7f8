"""The notebook's seed data (slow): MAP with the notebook's settings (the
acceptance check), relabelling and the point partition, and NUTS at its defaults.

The MAP and NUTS fits are computed once for this file; keeping every test that
uses them in one file keeps them on one pytest-xdist worker (``--dist loadfile``
in the Makefile).

MAP: the defaults (Adam 0.05, 10,000 steps, float32), 50 components, 4 restarts. Held
out: a fresh 19,000-point draw from the true mixture, scored against the true
mixture's own mean log density on the same draw.
"""

import warnings

import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

from dpgmm_ppl import labels

# Long fits: compiled with XLA's optimisation passes (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xla_optimized]


@pytest.fixture(scope="module")
def seed_map_fit():
    """MAP on the notebook's data with its settings, 50 components, 4 restarts.

    Shared by the MAP acceptance checks, the relabelling checks and the NUTS
    check that compares against it; about 160 s on two CPU cores.
    """
    import dpgmm_ppl
    from dpgmm_ppl.datasets import seed_mixture

    truth = seed_mixture()
    return truth, dpgmm_ppl.fit(truth.data, num_components=50, num_chains=4, rng_key=0)


@pytest.fixture(scope="module")
def seed_nuts_fit():
    """NUTS at its default settings on the notebook's data: 4 components, 4 chains x (200 + 200).

    Four components, not 25: each spare component adds a funnel (its location
    and scale are free when its weight is small, pinned when it is not) that
    NUTS crosses only with deep trees (``benchmarks/README.md``, NUTS).
    Shorter than the default 500 + 500 for the suite's time (74 s on two
    shared CPU cores; 3.3 minutes at 500 + 500). At 200 + 200 (key 0, the
    laddered starts, target 0.85): no divergence, R-hat 1.001 (alpha) and
    1.005 (lp), ESS 667 and 417, 25 leapfrog steps a draw, held-out gap
    0.00003 nats (measured 2026-12-04). Returns the truth, the fit and the
    RuntimeWarnings raised while fitting (a divergence warns).
    """
    import dpgmm_ppl
    from dpgmm_ppl.datasets import seed_mixture

    truth = seed_mixture()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        fit = dpgmm_ppl.fit(truth.data, backend="nuts", num_components=4, num_chains=4,
                            num_warmup=200, num_samples=200, rng_key=0)
    runtime_warnings = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    return truth, fit, runtime_warnings


@pytest.fixture(scope="module")
def seed_fit(seed_map_fit):
    truth, fit = seed_map_fit
    heldout = truth.sample(2026).data
    gaps = np.array([
        np.mean(truth.log_density(heldout)) - np.mean(fit.log_predictive_density(heldout, chain=c))
        for c in range(fit.num_chains)
    ])
    return truth, fit, gaps


def test_every_restart_is_finite(seed_fit):
    _, fit, _ = seed_fit
    assert np.all(np.isfinite(fit.losses))
    for name, value in fit.samples.items():
        assert np.all(np.isfinite(value)), name


def test_heldout_density_is_close_to_the_true_mixture(seed_fit):
    _, fit, gaps = seed_fit
    print("held-out gaps per restart (nats):", np.round(gaps, 5))
    assert gaps[fit.best_chain] < 0.0004
    assert np.median(gaps) < 0.0008


def test_best_restart_finds_the_four_true_components(seed_fit):
    truth, fit, _ = seed_fit
    chain = fit.best_chain
    weights = fit.samples["weights"][chain, 0]
    loc = fit.samples["loc"][chain, 0]
    heavy = weights >= 0.03
    for true_loc in truth.loc:
        assert np.min(np.abs(loc[heavy] - true_loc)) < 0.3, true_loc


@pytest.mark.parametrize("method", labels.METHODS)
def test_relabelled_map_restarts_agree(seed_map_fit, method):
    """4 restarts, 50 components, relabelled onto the best restart.

    MAP's default objective and its sorting of the components by weight
    (:mod:`dpgmm_ppl.infer.map`) take every restart to the same optimum
    (measured: every heavy location within 0.01 across restarts). The
    relabelled restarts must then agree label by label: every component
    above 5% mean weight within 0.2 across restarts, and every true
    location within 0.3 of one of them. The overlapping pair (true means -5
    and -2, standard deviations 2 and 1.1) is drawn with three components,
    two of them near -5, so the check is by location, not by count.
    """
    truth, fit = seed_map_fit
    relabelled = labels.relabel(fit, method=method)
    weights = relabelled.samples["weights"][:, 0]  # (restart, component)
    loc = relabelled.samples["loc"][:, 0]
    heavy = np.flatnonzero(weights.mean(axis=0) > 0.05)
    print(method, "heavy components:", heavy, "locs by restart:\n", np.round(loc[:, heavy].T, 3))
    assert 4 <= len(heavy) <= 6
    for k in heavy:
        assert np.ptp(loc[:, k]) < 0.2, loc[:, k]
        assert np.ptp(weights[:, k]) < 0.05, weights[:, k]
    medians = np.median(loc[:, heavy], axis=0)
    for true_loc in truth.loc:
        assert np.min(np.abs(medians - true_loc)) < 0.3, true_loc


def test_point_partition_of_the_nuts_posterior_finds_three_or_four_clusters(seed_nuts_fit):
    """VI (the default loss) gives 3 or 4 clusters; so do Binder's clusters of any size.

    Binder's loss with equal costs leaves a point on its own when it shares a
    component with each cluster with probability below one half, so points
    in the overlap of the components at -5 and -2 come out as a few tiny
    clusters (measured: 15 clusters, 11 of them with at most 13 points).
    """
    truth, fit, _ = seed_nuts_fit
    for loss in labels.LOSSES:
        partition = labels.point_partition(fit, loss=loss, rng_key=0)
        sizes = np.bincount(partition.labels)
        print(loss, "clusters:", sizes.size, "sizes:", sizes)
        if loss == "vi":
            assert sizes.size in (3, 4), sizes
        assert np.sum(sizes >= 0.01 * truth.data.size) in (3, 4), (loss, sizes)


def test_seed_data_four_chains_agree_and_predict_like_the_true_mixture(seed_nuts_fit, seed_map_fit):
    """The acceptance check on the notebook's 19,000 points, NUTS at its defaults.

    Four components, not 25: with 25, every draw ran to depth 10 (1023
    leapfrog steps), 527 s for 250 iterations of one chain on 2 shared CPU
    cores (``benchmarks/README.md``, NUTS).
    """
    truth, fit, runtime_warnings = seed_nuts_fit
    _, map_fit = seed_map_fit
    assert not runtime_warnings, [str(w.message) for w in runtime_warnings]  # no divergence
    stats = fit.sample_stats
    print("timing:", fit.timing, "mean leapfrog steps:", stats["n_steps"].mean())
    assert not stats["diverging"].any()
    for name, value in (("alpha", fit.samples["alpha"]), ("lp", stats["lp"])):
        rhat = float(split_gelman_rubin(value))
        print(name, "R-hat", rhat, "ESS", float(effective_sample_size(value)))
        assert rhat < 1.05, (name, rhat)
    heldout = truth.sample(2026).data
    nuts_score = np.mean(fit.log_predictive_density(heldout))
    gap = np.mean(truth.log_density(heldout)) - nuts_score
    map_score = np.mean(map_fit.log_predictive_density(heldout, chain=map_fit.best_chain))
    print("held-out gap (nats):", gap, "NUTS minus MAP:", nuts_score - map_score)
    assert gap < 0.0006
    assert nuts_score >= map_score
    weights = fit.samples["weights"].mean(axis=(0, 1))
    loc = np.median(fit.samples["loc"], axis=(0, 1))
    order = np.argsort(loc)
    np.testing.assert_allclose(loc[order], np.sort(truth.loc), atol=0.1)
    np.testing.assert_allclose(weights[order], truth.weights[np.argsort(truth.loc)], atol=0.02)
