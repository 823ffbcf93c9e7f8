"""backend="nuts": an exact posterior, two clusters, the divergence warning,
option checks, reproducibility and the trace count.
The seed-data check is in test_seed_data.py."""

import warnings

import jax
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

import dpgmm_ppl
from dpgmm_ppl import density as density_module
from dpgmm_ppl.infer import nuts as nuts_module
from dpgmm_ppl.infer.nuts import NUTS, _resolve_chain_method, centered_stick_count

STAT_NAMES = {"lp", "diverging", "irreversible", "acceptance_rate", "n_steps", "n_leapfrog",
              "tree_depth", "reached_max_treedepth", "step_size", "energy"}


class _Recorder:
    """Keeps every LogDensity that ``dpgmm_ppl.fit`` builds."""

    def __init__(self, monkeypatch):
        self.built = []
        original = density_module.build_log_density

        def recording_build(*args, **kwargs):
            self.built.append(original(*args, **kwargs))
            return self.built[-1]

        monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", recording_build)


@pytest.fixture(scope="module")
def known_scale():
    """K=1 with a known scale: the posterior of ``loc`` is Normal, of ``alpha`` its prior."""
    rng = np.random.default_rng(11)
    sigma = 2.0
    data = rng.normal(1.5, sigma, 100).astype(np.float32)
    kwargs = dict(
        backend="nuts", num_components=1, num_chains=2, rng_key=7,
        priors=dpgmm_ppl.Priors(fixed_scale=sigma), num_warmup=200, num_samples=1000,
        num_init_steps=0,  # one mode: the k-means++ starts will do
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        recorder = _Recorder(monkeypatch)
        fit = dpgmm_ppl.fit(data, **kwargs)
    (density,) = recorder.built
    return data, sigma, kwargs, fit, density


@pytest.fixture(scope="module")
def two_clusters_fit():
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(-4.0, 0.7, 120), rng.normal(3.0, 1.2, 80)]).astype(np.float32)
    with pytest.MonkeyPatch.context() as monkeypatch, warnings.catch_warnings():
        # A rare divergence among the two spare components is not what this checks.
        warnings.simplefilter("ignore", RuntimeWarning)
        recorder = _Recorder(monkeypatch)
        fit = dpgmm_ppl.fit(
            data, backend="nuts", num_components=4, num_chains=3, rng_key=2, num_samples=300,
        )
    (density,) = recorder.built
    return fit, density


def test_single_component_with_known_scale_matches_the_exact_posterior(known_scale):
    data, sigma, _, fit, density = known_scale
    prior_mean = float(density.priors.loc_mean)
    prior_sd = float(density.priors.loc_scale)
    precision = 1.0 / prior_sd**2 + data.size / sigma**2
    post_sd = precision**-0.5
    post_mean = (prior_mean / prior_sd**2 + data.astype(np.float64).sum() / sigma**2) / precision

    loc = fit.samples["loc"][..., 0].astype(np.float64)  # (chain, draw)
    ess = effective_sample_size(loc)
    assert ess > 400, ess
    assert abs(loc.mean() - post_mean) < 4 * post_sd / np.sqrt(ess)
    # The standard error of a standard deviation is about sd / sqrt(2 ESS).
    assert abs(loc.std() / post_sd - 1) < max(0.1, 4 / np.sqrt(2 * ess))
    # With one component the weights are fixed, so alpha keeps its Gamma(1, 1) prior.
    alpha = fit.samples["alpha"].astype(np.float64)
    assert abs(alpha.mean() - 1.0) < 4 * 1.0 / np.sqrt(effective_sample_size(alpha))
    assert not fit.sample_stats["diverging"].any()


def test_sample_stats_timing_and_the_shared_density(known_scale):
    _, _, kwargs, fit, density = known_scale
    assert fit.backend == "nuts" and fit.losses is None and fit.history is None
    assert set(fit.sample_stats) == STAT_NAMES
    for name, value in fit.sample_stats.items():
        assert value.shape == (2, 1000), name
    stats = fit.sample_stats
    # A tree of depth d began d doublings; the last added at least one leaf.
    assert np.all(2 ** (stats["tree_depth"] - 1) <= stats["n_steps"])
    assert np.all(stats["n_steps"] <= 2 ** stats["tree_depth"] - 1)
    # Each leaf is one leapfrog step or more (halved steps, reversibility tests).
    assert np.all(stats["n_leapfrog"] >= stats["n_steps"])
    # A Normal posterior needs a few leapfrog steps per draw, far below the default bound.
    np.testing.assert_array_equal(stats["reached_max_treedepth"], stats["tree_depth"] >= 10)
    assert fit.diagnostics().treedepth_shares == (0.0, 0.0)
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))
    # After warmup the step size is fixed within a chain.
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])
    # lp is minus the shared potential at the draw.
    draws = jax.tree_util.tree_map(lambda leaf: leaf[:, :5], _unconstrained(fit, density))
    lp = -jax.vmap(jax.vmap(density.potential_fn, in_axes=(0, None)), in_axes=(0, None))(
        draws, density.data
    )
    np.testing.assert_allclose(stats["lp"][:, :5], lp, rtol=1e-5)
    assert fit.timing["compile_seconds"] > 0 and fit.timing["run_seconds"] > 0
    # NUTS evaluates the potential from one trace: not one per step or chain.
    assert density.trace_counts["potential_fn"] <= 3


def _unconstrained(fit, density):
    return jax.vmap(jax.vmap(density.unconstrain_fn))(
        {name: fit.samples[name] for name in ("alpha", "weights", "loc", "scale")}
    )


def test_same_key_gives_identical_draws(known_scale):
    data, _, kwargs, fit, _ = known_scale
    again = dpgmm_ppl.fit(data, **{**kwargs, "rng_key": jax.random.PRNGKey(7)})
    for name in fit.samples:
        np.testing.assert_array_equal(fit.samples[name], again.samples[name], err_msg=name)
    for name in fit.sample_stats:
        np.testing.assert_array_equal(fit.sample_stats[name], again.sample_stats[name], err_msg=name)
    # The chains start apart and run on their own keys.
    assert not np.array_equal(fit.samples["loc"][0], fit.samples["loc"][1])


def _sides_of_zero(fit):
    """Label-invariant and indifferent to a cluster split over two components:
    the mass and the mean location on each side of 0, draw by draw."""
    weights = fit.samples["weights"].reshape(-1, fit.num_components)
    loc = fit.samples["loc"].reshape(-1, fit.num_components)
    left = loc < 0
    left_mass = np.sum(weights * left, axis=1)
    left_mean = np.sum(weights * loc * left, axis=1) / left_mass
    right_mean = np.sum(weights * loc * ~left, axis=1) / (1 - left_mass)
    return weights, loc, left_mass, left_mean, right_mean


@pytest.mark.slow
def test_two_clusters_are_recovered_and_the_chains_agree(two_clusters_fit):
    fit, density = two_clusters_fit
    assert density.trace_counts["potential_fn"] <= 3
    assert split_gelman_rubin(fit.sample_stats["lp"]) < 1.05
    weights, loc, left_mass, left_mean, right_mean = _sides_of_zero(fit)
    # Truth: weights 0.6 / 0.4 (posterior sd about 0.035), locations -4 and 3
    # (posterior sds about 0.06 and 0.13 with 120 and 80 points); the
    # tolerances also cover the sampling error of the data.
    np.testing.assert_allclose(left_mass.mean(), 0.6, atol=0.1)
    np.testing.assert_allclose([left_mean.mean(), right_mean.mean()], [-4.0, 3.0], atol=0.3)
    # The sorted locations of the heavy components, in the draws that have
    # two. A spare component sometimes takes part of a cluster, and a chain
    # can stay in such a split for its whole run: over the keys and JAX
    # versions measured, 69-92 % of the draws had exactly two heavy ones.
    heavy = weights > 0.1
    two = heavy.sum(axis=1) == 2
    assert two.mean() > 0.5
    located = np.sort(np.where(heavy, loc, np.nan)[two], axis=1)[:, :2]
    np.testing.assert_allclose(located.mean(axis=0), [-4.0, 3.0], atol=0.3)


@pytest.mark.slow
def test_divergences_give_one_warning_with_the_count(two_clusters_fit):
    fit, _ = two_clusters_fit
    # No warmup: NumPyro's unadapted step size of 1 and unit mass matrix,
    # far too coarse for locations known to about 0.05, with plain leapfrog
    # steps (the halving ones would not diverge there).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        diverged = dpgmm_ppl.fit(
            fit.data, backend="nuts", num_components=2, num_warmup=0, num_samples=30,
            num_init_steps=0, energy_tolerance=None, rng_key=0,
        )
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1, [str(w.message) for w in runtime]
    count = int(diverged.sample_stats["diverging"].sum())
    assert count > 0
    message = str(runtime[0].message)
    assert f"{count} divergent" in message and "target_accept_prob" in message
    assert runtime[0].filename == __file__


def test_a_chain_held_at_the_depth_bound_is_warned_about_and_diagnosed(known_scale):
    """With ``max_tree_depth=1`` every tree is one leapfrog step, so every draw reached
    the bound: each chain is named in one warning and in the diagnostics' problems."""
    data, _, kwargs, _, _ = known_scale
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = dpgmm_ppl.fit(data, **{**kwargs, "num_warmup": 50, "num_samples": 40,
                                     "max_tree_depth": 1})
    np.testing.assert_array_equal(fit.sample_stats["n_steps"], 1)
    assert fit.sample_stats["reached_max_treedepth"].all()
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(runtime) == 1, [str(w.message) for w in runtime]
    message = str(runtime[0].message)
    assert message.startswith("NUTS (max_tree_depth=1): chain 0 reached the maximum tree "
                              "depth in 100% of its draws (> 10%); chain 1 reached")
    assert runtime[0].filename == __file__
    diagnostics = fit.diagnostics()
    assert diagnostics.treedepth_shares == (1.0, 1.0)
    assert [p for p in diagnostics.problems if "tree depth" in p] == [
        f"chain {chain} reached the maximum tree depth in 100% of its draws (> 10%)"
        for chain in (0, 1)
    ]


BAD_OPTIONS = [
    ({"target_accept_prob": 1.5}, ValueError, "target_accept_prob"),
    ({"target_accept_prob": 0.0}, ValueError, "target_accept_prob"),
    ({"target_accept_prob": "high"}, TypeError, "target_accept_prob"),
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"num_samples": 10.0}, TypeError, "num_samples"),
    ({"num_warmup": -1}, ValueError, "num_warmup"),
    ({"max_tree_depth": 0}, ValueError, "max_tree_depth"),
    ({"max_tree_depth": (5, 10)}, TypeError, "max_tree_depth"),
    ({"dense_mass": "yes"}, TypeError, "dense_mass"),
    ({"max_warmup_tree_depth": 0}, ValueError, "max_warmup_tree_depth"),
    ({"max_warmup_tree_depth": 8.0}, TypeError, "max_warmup_tree_depth"),
    ({"init_inverse_mass": "laplace"}, ValueError, "init_inverse_mass must be one of"),
    ({"chain_method": "pmap"}, ValueError, "chain_method"),
    ({"num_init_steps": -5}, ValueError, "num_init_steps"),
    ({"parameterization": "whitened"}, ValueError, "parameterization must be"),
    ({"parameterization": None}, ValueError, "parameterization must be"),
    ({"centered_sticks": -1}, ValueError, "centered_sticks must be an integer >= 0"),
    ({"centered_sticks": 2.0}, TypeError, "centered_sticks must be an integer >= 0"),
    ({"centered_sticks": "all"}, ValueError, "centered_sticks must be 'auto' or"),
    ({"centered_sticks": 2, "parameterization": "centered"}, ValueError,
     "every stick is centred already"),
    ({"num_steps": 100}, TypeError, "does not take the option"),
    ({"energy_tolerance": 0.0}, ValueError, "energy_tolerance must be a finite float > 0"),
    ({"energy_tolerance": float("inf")}, ValueError, "energy_tolerance must be a finite"),
    ({"energy_tolerance": "20"}, TypeError, "energy_tolerance must be None or a float"),
    ({"energy_tolerance": True}, TypeError, "energy_tolerance must be None or a float"),
]


@pytest.mark.parametrize("kwargs, error, fragment", BAD_OPTIONS)
def test_bad_options_are_refused_before_tracing(monkeypatch, kwargs, error, fragment):
    monkeypatch.setattr(
        dpgmm_ppl.api, "build_log_density", lambda *a, **k: pytest.fail("traced")
    )
    with pytest.raises(error, match=fragment):
        dpgmm_ppl.fit(np.arange(10.0), backend="nuts", **kwargs)


def test_default_chain_method_uses_devices_when_there_are_enough():
    devices = jax.local_device_count()
    assert _resolve_chain_method(None, devices) == "parallel"
    one_after_another = "sequential" if jax.default_backend() == "cpu" else "vectorized"
    assert _resolve_chain_method(None, devices + 1) == one_after_another
    assert _resolve_chain_method("sequential", 1) == "sequential"
    assert set(NUTS.defaults) >= {"num_warmup", "num_samples", "target_accept_prob",
                                  "dense_mass", "max_tree_depth", "chain_method"}


def test_auto_dense_mass_needs_more_warmup_draws_than_coordinates():
    from dpgmm_ppl.infer.nuts import resolve_dense_mass

    # NumPyro's schedule for 500 warmup steps: the longest middle window has 200 draws.
    assert resolve_dense_mass("auto", 500, {"a": np.zeros(199)}) is True
    assert resolve_dense_mass("auto", 500, {"a": np.zeros(150), "b": np.zeros((5, 10))}) is False
    # Fewer than 20 warmup steps: one window, no mass adaptation at all.
    assert resolve_dense_mass("auto", 10, {"a": np.zeros(3)}) is False
    # An explicit choice is kept.
    assert resolve_dense_mass(True, 10, {"a": np.zeros(500)}) is True
    assert resolve_dense_mass(False, 500, {"a": np.zeros(3)}) is False


def test_starting_inverse_mass_is_one_over_the_hessian_diagonal(two_clusters_fit):
    """Against jax.hessian of the flattened potential, an independent evaluation."""
    from jax.flatten_util import ravel_pytree

    from dpgmm_ppl.infer._nuts_starts import hessian_inverse_mass as _hessian_inverse_mass

    fit, density = two_clusters_fit
    starts = _unconstrained(fit, density)
    starts = jax.tree_util.tree_map(lambda leaf: leaf[:, 0], starts)  # one per chain
    expected = []
    for chain in range(fit.num_chains):
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda leaf, c=chain: leaf[c], starts))
        hessian = jax.hessian(lambda point, u=unravel: density.potential_fn(u(point), density.data))
        expected.append(np.diag(np.asarray(hessian(flat), dtype=np.float64)))
    expected = 1.0 / np.maximum(np.median(expected, axis=0), 1.0)
    assert expected.min() < 0.1 and expected.max() == 1.0  # the floor and the curvature both act
    diagonal = np.asarray(_hessian_inverse_mass(density, starts, dense_mass=False))
    np.testing.assert_allclose(diagonal, expected, rtol=1e-3)
    dense = np.asarray(_hessian_inverse_mass(density, starts, dense_mass=True))
    np.testing.assert_allclose(dense, np.diag(diagonal), rtol=1e-6)


def test_warmup_options_reach_the_kernel(monkeypatch):
    import dpgmm_ppl.infer._nuts_program as program_module

    class Stop(Exception):
        pass

    made, transitions = [], []
    make_transition = program_module.make_transition

    def recording_init(potential_fn, start, rng_key, **options):  # nothing is run
        made.append(options)
        raise Stop

    def recording_transition(potential_fn, **options):
        transitions.append(options)
        return make_transition(potential_fn, **options)

    monkeypatch.setattr(program_module, "init_state", recording_init)
    monkeypatch.setattr(program_module, "make_transition", recording_transition)
    monkeypatch.setattr(program_module, "cached_program", lambda key, build: build())
    data = np.random.default_rng(3).normal(size=60).astype(np.float32)
    common = dict(backend="nuts", num_components=2, num_warmup=20, num_samples=5,
                  num_init_steps=0, dense_mass=False, rng_key=0, centered_sticks=0)
    with pytest.raises(Stop):
        dpgmm_ppl.fit(data, max_warmup_tree_depth=3, max_tree_depth=5,
                      init_inverse_mass="hessian", **common)
    with pytest.raises(Stop):
        dpgmm_ppl.fit(data, **common)
    assert transitions[0]["max_tree_depth"] == (3, 5)
    assert transitions[0]["energy_tolerance"] == 100.0  # the default
    assert made[0]["inverse_mass"].shape == (2 + 2 + 1 + 1,)  # loc, scale, alpha, stick
    assert made[0]["num_warmup"] == 20 and made[1]["inverse_mass"] is None
    assert transitions[1]["max_tree_depth"] == 10
    assert made[1]["dense_mass"] is False and made[1]["target_accept_prob"] == 0.9  # 60 points
    # From 2,000 points on, the defaults are those for many points (size_defaults).
    many = np.random.default_rng(4).normal(size=2_000).astype(np.float32)
    options = {**common, "dense_mass": "auto", "centered_sticks": None}
    with pytest.raises(Stop):
        dpgmm_ppl.fit(many, **options)
    assert transitions[2]["max_tree_depth"] == (8, 10)
    assert made[2]["dense_mass"] is False and made[2]["target_accept_prob"] == 0.85


def test_centred_sticks_are_those_with_enough_points_after_them():
    weights = np.array([
        [0.5, 0.3, 0.15, 0.04, 0.01, 0.0],  # after each stick: 0.5, 0.2, 0.05, 0.01, 0.0
        [0.7, 0.29, 0.009, 0.001, 0.0, 0.0],  # 0.3, 0.01, 0.001, 0.0, 0.0
    ])
    # At least 20 points after the stick by default (1 % of 1,000 points is fewer).
    assert centered_stick_count(weights[:1], 1000) == 3  # 50 points after the third
    assert centered_stick_count(weights[1:], 1000) == 1  # 300, then 10
    assert centered_stick_count(weights, 1000) == 1  # the smallest over the chains
    assert centered_stick_count(weights[:1], 1000, min_points=9.5, min_fraction=0) == 4  # 10 after the fourth
    assert centered_stick_count(weights, 1000, min_points=9.5, min_fraction=0) == 2  # 10 after the second
    assert centered_stick_count(weights, 30) == 0  # 15 points after the first stick
    # And at least 1 % of the data, which binds from 2,000 points on.
    large = np.array([[0.5, 0.3, 0.15, 0.035, 0.012, 0.003]])  # after: ..., 0.015, 0.003
    assert centered_stick_count(large, 100_000) == 4  # 1,500 points, then 300 < 1,000
    assert centered_stick_count(large, 100_000, min_fraction=0.0) == 5  # 300 >= 20


@pytest.mark.slow
def test_auto_centred_sticks_centre_the_occupied_components_and_find_the_clusters(monkeypatch):
    rng = np.random.default_rng(5)
    data = np.concatenate([rng.normal(-4.0, 0.7, 120), rng.normal(3.0, 1.2, 80)]).astype(np.float32)
    charts = []
    original_rechart = nuts_module.rechart

    def recording_rechart(density, num_centered_sticks):
        charts.append(num_centered_sticks)
        return original_rechart(density, num_centered_sticks)

    monkeypatch.setattr(nuts_module, "rechart", recording_rechart)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = dpgmm_ppl.fit(data, backend="nuts", num_components=4, num_chains=1, rng_key=0,
                            num_warmup=300, num_samples=300, centered_sticks="auto")
    # The first stick (120 points against 80 after it) is centred; the spare
    # ones only if a cluster is split over them.
    assert len(charts) == 1 and charts[0] >= 1
    weights, loc, left_mass, left_mean, right_mean = _sides_of_zero(fit)
    # Truth 0.6 / 0.4 at -4 and 3 (posterior sds about 0.035, 0.06, 0.13).
    np.testing.assert_allclose(left_mass.mean(), 0.6, atol=0.1)
    np.testing.assert_allclose([left_mean.mean(), right_mean.mean()], [-4.0, 3.0], atol=0.3)
