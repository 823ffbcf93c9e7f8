"""backend="svi": the ELBO against NumPyro's, an exact posterior, the seed data,
the three families, option checks, reproducibility and the trace count."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import dpgmm_ppl
from dpgmm_ppl import density as density_module
from dpgmm_ppl.datasets import seed_mixture
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.infer.svi import SVI, SVIState, build_step, make_guide, negative_elbo
from dpgmm_ppl.mixtures import mixture_log_density


@pytest.fixture(scope="module")
def two_clusters():
    rng = np.random.default_rng(1)
    return np.concatenate([rng.normal(-4.0, 0.7, 180), rng.normal(3.0, 1.0, 120)]).astype(np.float32)


@pytest.fixture
def recorded_densities(monkeypatch):
    built = []
    original = density_module.build_log_density

    def recording_build(*args, **kwargs):
        built.append(original(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", recording_build)
    return built


def _mean_and_se(values):
    values = np.asarray(values, np.float64)
    return values.mean(), values.std(ddof=1) / np.sqrt(values.size)


def _numpyro_autonormal_loss(density, param_map, num_particles, rng_key):
    """NumPyro's ``Trace_ELBO(num_particles)`` loss of ``AutoNormal`` at ``param_map``,
    and its per-particle losses (kept by the particle-mapping hook)."""
    model_kwargs = {"data": density.data, **density.model_kwargs}
    guide = AutoNormal(dpgmm_ppl.dpgmm)
    # Set the guide up (it traces the model once) inside jit: eagerly it
    # compiles hundreds of small ops. Only shapes of that trace are used later.
    jax.jit(lambda key: numpyro.handlers.seed(guide, key)(**model_kwargs) and 0)(rng_key)
    kept = []

    def vmap_and_keep(single_particle_elbo, keys):
        out = jax.vmap(single_particle_elbo)(keys)
        kept.append(jax.tree_util.tree_leaves(out)[0])
        return out

    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=vmap_and_keep)

    @jax.jit
    def loss(key):
        value = elbo.loss(key, param_map, dpgmm_ppl.dpgmm, guide, **model_kwargs)
        return value, -kept[-1]

    return loss(rng_key)


def test_diagonal_elbo_matches_numpyro_autonormal_trace_elbo():
    """Same variational parameters, model and data: our loss and NumPyro's
    Trace_ELBO of AutoNormal agree up to Monte-Carlo error."""
    rng = np.random.default_rng(2)
    data = np.concatenate([rng.normal(-3.0, 1.0, 120), rng.normal(2.0, 0.5, 80)]).astype(np.float32)
    # Narrow starting components (the prior mode of a scale at a sixth of the
    # data's spread), where the loss is sensitive to the means (below).
    priors = dpgmm_ppl.Priors(scale_rate=0.5 * float(data.std()))
    density = build_log_density(data, num_components=4, priors=priors)
    flat, unravel = ravel_pytree(density.init_position)
    mean = flat + jnp.asarray(rng.normal(0.0, 0.1, flat.shape), flat.dtype)
    scale = jnp.asarray(rng.uniform(0.01, 0.05, flat.shape), flat.dtype)
    family = make_guide("diagonal", flat.size)
    num_particles = 2000
    keys = jax.random.split(jax.random.PRNGKey(0), num_particles)

    @jax.jit
    def ours(params):
        return jax.vmap(
            lambda key: negative_elbo(params, key, density.data, guide=family,
                                      potential_fn=density.potential_fn, unravel=unravel)
        )(keys)

    # AutoNormal's parameters are the constrained ones: loc and scale per site,
    # on the same unconstrained coordinates (the same biject_to transforms).
    sites_mean, sites_scale = unravel(mean), unravel(scale)
    param_map = {f"{site}_auto_loc": value for site, value in sites_mean.items()}
    param_map |= {f"{site}_auto_scale": value for site, value in sites_scale.items()}
    numpyro_loss, numpyro_particles = _numpyro_autonormal_loss(
        density, param_map, num_particles, jax.random.PRNGKey(1)
    )
    # NumPyro evaluates the model on the density's standardised data; in data
    # units each observation adds the log of the frame's unit.
    in_data_units = density.num_data * density.frame.log_unit
    numpyro_loss, numpyro_particles = numpyro_loss + in_data_units, numpyro_particles + in_data_units
    numpyro_mean, numpyro_se = _mean_and_se(numpyro_particles)
    np.testing.assert_allclose(numpyro_mean, float(numpyro_loss), rtol=1e-5)
    our_mean, our_se = _mean_and_se(ours({"loc": mean, "log_scale": jnp.log(scale)}))
    tolerance = 5.0 * np.hypot(our_se, numpyro_se)
    print(f"ours {our_mean:.3f} +- {our_se:.3f}; NumPyro Trace_ELBO({num_particles}) "
          f"{float(numpyro_loss):.3f} +- {numpyro_se:.3f}")
    assert abs(our_mean - float(numpyro_loss)) < tolerance
    # The check can fail: moving four means by 0.1, or halving the scales,
    # moves our loss by several times that tolerance. (Doubling them happens
    # to move it by less: the entropy gained and the energy lost nearly cancel.)
    for params in (
        {"loc": mean.at[1:5].add(0.1), "log_scale": jnp.log(scale)},
        {"loc": mean, "log_scale": jnp.log(0.5 * scale)},
    ):
        assert abs(np.mean(ours(params)) - float(numpyro_loss)) > 3 * tolerance


def test_single_component_with_known_scale_recovers_the_exact_posterior():
    sigma, true_loc, num_data = 1.5, 2.0, 100
    data = np.random.default_rng(3).normal(true_loc, sigma, num_data).astype(np.float32)
    priors = dpgmm_ppl.Priors(fixed_scale=sigma)
    num_samples = 4000
    # Two restarts under vmap (the accelerators' default): both must recover it.
    fit = dpgmm_ppl.fit(data, backend="svi", num_components=1, priors=priors, num_chains=2,
                        chain_method="vectorized", num_samples=num_samples, rng_key=0)
    prior_mean, prior_sd = float(fit.priors.loc_mean), float(fit.priors.loc_scale)
    precision = 1.0 / prior_sd**2 + num_data / sigma**2
    exact_mean = (prior_mean / prior_sd**2 + data.astype(np.float64).sum() / sigma**2) / precision
    exact_sd = precision**-0.5
    # 4 Monte-Carlo standard errors of the draws, plus 5% of a posterior sd for
    # the optimiser's last noisy steps (over 8 restarts with the default
    # 3,000 steps the mean was off by 0.04 sd rms, the sd by 2.5%).
    tolerance = 4.0 * exact_sd / np.sqrt(num_samples) + 0.05 * exact_sd
    for chain in range(2):
        draws = fit.samples["loc"][chain, :, 0].astype(np.float64)
        assert abs(draws.mean() - exact_mean) < tolerance
        assert abs(draws.std() / exact_sd - 1.0) < 0.10
    assert not np.array_equal(fit.losses[0], fit.losses[1])
    np.testing.assert_allclose(fit.samples["scale"], sigma)


@pytest.mark.slow
@pytest.mark.xla_optimized
def test_seed_data_heldout_density_is_close_to_the_true_mixture():
    """Default options on the seed data with 25 components (about 40 s on 2 cores)."""
    truth = seed_mixture()
    fit = dpgmm_ppl.fit(truth.data, backend="svi", num_components=25, rng_key=0)
    heldout = truth.sample(2026).data
    gap = np.mean(truth.log_density(heldout)) - np.mean(fit.log_predictive_density(heldout))
    print(f"held-out gap {gap:.5f} nats; timing {fit.timing}")
    assert np.all(np.isfinite(fit.losses))
    assert gap < 0.0006
    weights = fit.samples["weights"][0].mean(axis=0)
    loc = fit.samples["loc"][0].mean(axis=0)
    for true_loc in truth.loc:
        assert np.min(np.abs(loc[weights >= 0.03] - true_loc)) < 0.3, true_loc


def _assert_two_clusters(samples):
    """The fitted mixture is the truth: weights 0.6/0.4, locs -4/3, scales 0.7/1.0.

    The unimodal variational family often keeps a cluster split between two
    overlapping components that k-means++ seeded there (MAP's stick-breaking
    mode merges them), so components are grouped by side before comparing.
    """
    weights = samples["weights"][0].mean(axis=0)
    loc = samples["loc"][0].mean(axis=0)
    left, right = (loc < -0.5) & (weights > 0.01), (loc > 0.5) & (weights > 0.01)
    # Binomial sd of a weight with 300 points: 0.03.
    np.testing.assert_allclose([weights[left].sum(), weights[right].sum()], [0.6, 0.4], atol=0.07)
    # Standard errors of the cluster means: 0.05 and 0.09.
    np.testing.assert_allclose(
        [np.average(loc[left], weights=weights[left]), np.average(loc[right], weights=weights[right])],
        [-4.0, 3.0], atol=0.3,
    )
    rng = np.random.default_rng(7)
    heldout = np.concatenate([rng.normal(-4.0, 0.7, 1200), rng.normal(3.0, 1.0, 800)]).astype(np.float32)
    true_density = 0.6 * np.exp(-0.5 * ((heldout + 4.0) / 0.7) ** 2) / 0.7 + 0.4 * np.exp(
        -0.5 * (heldout - 3.0) ** 2
    )
    true_log_density = np.log(true_density / np.sqrt(2 * np.pi))
    pointwise = mixture_log_density(samples, heldout)[0]
    predictive = np.logaddexp.reduce(pointwise, axis=0) - np.log(pointwise.shape[0])
    # A 5-parameter truth fitted on 300 points is ~5/600 nats away in expectation.
    assert np.mean(true_log_density) - np.mean(predictive) < 0.05


@pytest.mark.slow
def test_full_guide_recovers_two_clusters_with_a_positive_definite_covariance(two_clusters):
    density = build_log_density(two_clusters, num_components=4)
    flat, unravel = ravel_pytree(density.init_position)
    family = make_guide("full", flat.size)
    num_steps = 1500
    optimizer = optax.adam(optax.cosine_decay_schedule(0.03, num_steps, alpha=0.03))
    step = build_step(family, density.potential_fn, unravel, optimizer)
    params = family.init(flat)

    @jax.jit
    def run(state, keys):
        state, info = jax.lax.scan(lambda s, key: step(s, key, density.data), state, keys[1:])
        draws = family.sample(state.params, keys[0], 20_000)
        samples = jax.vmap(lambda z: density.constrain_fn(unravel(z)))(draws[:400])
        return state, info, draws, samples

    state, info, draws, samples = run(
        SVIState(params, optimizer.init(params)), jax.random.split(jax.random.PRNGKey(0), num_steps + 1)
    )
    assert info.loss[-100:].mean() < info.loss[:100].mean()
    _assert_two_clusters(jax.tree_util.tree_map(lambda x: np.asarray(x)[None], samples))
    cov = np.asarray(family.covariance(state.params), np.float64)
    np.testing.assert_array_equal(cov, cov.T)
    assert np.linalg.eigvalsh(cov).min() > 0
    # The off-diagonal factor is used: some coordinates are clearly correlated.
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    assert np.max(np.abs(corr - np.eye(flat.size))) > 0.1
    # Draws from the family have that covariance: the sd of a sample correlation
    # from 20,000 draws is at most 0.007.
    np.testing.assert_allclose(np.corrcoef(np.asarray(draws, np.float64).T), corr, atol=0.04)


BAD_OPTIONS = [
    ({"num_samples": 0}, ValueError, "num_samples"),
    ({"guide": "meanfield"}, ValueError, r"guide must be one of \['diagonal', 'lowrank', 'full'\]"),
    ({"rank": 0}, ValueError, "rank"),
    ({"num_particles": 1.5}, TypeError, "num_particles"),
    ({"num_steps": -3}, ValueError, "num_steps"),
    ({"optimizer": "adam"}, TypeError, "optimizer"),
    ({"chain_method": "parallel"}, ValueError, "chain_method"),
    ({"parameterization": "whitened"}, ValueError, "parameterization must be"),
    ({"parameterization": None}, ValueError, "parameterization must be"),
    ({"num_warmup": 100}, TypeError, "does not take the option"),
]


@pytest.mark.parametrize("kwargs, error, fragment", BAD_OPTIONS)
def test_bad_options_are_refused_before_tracing(monkeypatch, two_clusters, kwargs, error, fragment):
    monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", lambda *a, **k: pytest.fail("traced"))
    with pytest.raises(error, match=fragment):
        dpgmm_ppl.fit(two_clusters, backend="svi", **kwargs)


def test_rank_must_be_below_the_dimension(recorded_densities, two_clusters):
    # 4 components: alpha, 3 sticks, 4 locs and 4 scales, 12 coordinates.
    with pytest.raises(ValueError, match=r"rank must be in \[1, 12\)"):
        dpgmm_ppl.fit(two_clusters, backend="svi", guide="lowrank", rank=12, num_components=4)
    assert recorded_densities[0].trace_counts["potential_fn"] == 0


@pytest.mark.slow
def test_lowrank_guide_recovers_two_clusters_the_same_for_the_same_key_and_traces_once(
    recorded_densities, two_clusters
):
    options = dict(guide="lowrank", rank=3, num_steps=1500, num_samples=400, history_every=400)
    fit = dpgmm_ppl.fit(two_clusters, backend="svi", num_components=4, num_chains=2, rng_key=3, **options)
    (density,) = recorded_densities
    # Once for the optimisation loop and once for the draws' lp at most, not
    # once per step, particle, draw or restart.
    assert density.trace_counts["potential_fn"] <= 3
    assert np.all(np.isfinite(fit.losses))
    for chain in range(2):
        _assert_two_clusters({name: value[chain : chain + 1] for name, value in fit.samples.items()})
    assert not np.array_equal(fit.losses[0], fit.losses[1])  # restarts differ
    assert fit.losses.shape == (2, 1500)
    assert fit.samples["loc"].shape == (2, 400, 4)
    assert fit.samples["weights"].shape == (2, 400, 4)
    assert fit.sample_stats["lp"].shape == (2, 400)
    assert np.all(np.isfinite(fit.sample_stats["lp"]))
    np.testing.assert_array_equal(fit.sample_stats["loss"], np.broadcast_to(fit.losses[:, -1:], (2, 400)))
    np.testing.assert_array_equal(fit.history_steps, [400, 800, 1200, 1500])
    assert fit.history["loc"].shape == (2, 4, 4)

    # The same key again, straight to the backend on the same density: bit for
    # bit the same output.
    again = SVI.run(jax.random.PRNGKey(3), density, num_chains=2, **{**SVI.defaults, **options})
    assert density.trace_counts["potential_fn"] <= 3
    np.testing.assert_array_equal(again.losses, fit.losses)
    np.testing.assert_array_equal(again.sample_stats["lp"], fit.sample_stats["lp"])
    np.testing.assert_array_equal(
        jax.vmap(jax.vmap(density.constrain_fn))(again.positions)["loc"], fit.samples["loc"]
    )


def test_a_step_with_a_non_finite_loss_is_skipped():
    family = make_guide("diagonal", 2)
    # Finite only left of 5: a draw there makes the loss infinite.
    potential = lambda z, data: jnp.where(z[0] < 5.0, 0.5 * jnp.sum(z**2), jnp.inf)  # noqa: E731
    optimizer = optax.sgd(0.1)
    step = jax.jit(build_step(family, potential, lambda z: z, optimizer))
    params = {"loc": jnp.array([4.99, 0.0]), "log_scale": jnp.zeros(2)}
    state = SVIState(params, optimizer.init(params))
    infos = [step(state, jax.random.PRNGKey(i), None)[1] for i in range(20)]
    skipped = [i for i, info in enumerate(infos) if not info.is_finite]
    kept = [i for i, info in enumerate(infos) if info.is_finite]
    assert skipped and kept  # about half the draws land right of 5
    new_state, info = step(state, jax.random.PRNGKey(skipped[0]), None)
    assert not np.isfinite(info.loss)
    for name in params:
        np.testing.assert_array_equal(new_state.params[name], params[name])
    new_state, _ = step(state, jax.random.PRNGKey(kept[0]), None)
    assert not np.array_equal(new_state.params["loc"], params["loc"])
