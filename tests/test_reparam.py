"""The non-centred chart of the sticks: same model, other coordinates."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.handlers import reparam
from numpyro.infer import Predictive
from scipy import stats
from test_model_density import point, scipy_log_joint  # noqa: F401  (fixture)

from dpgmm_ppl import GaussianMixture, StickBreakingWeights, build_log_density, dpgmm
from dpgmm_ppl._frame import UNITS_PER_SPREAD
from dpgmm_ppl.density import rechart
from dpgmm_ppl.reparam import NonCenteredStickBreaking, exponentials_from_weights


def test_noncentered_potential_is_the_log_joint_plus_its_own_jacobian(point):  # noqa: F811
    """Closed form: sticks enter through e_k = -alpha log(1 - v_k), e_k = exp(u_k)."""
    data, values = point
    density = build_log_density(data, num_components=4, parameterization="noncentered")
    position = density.unconstrain_fn(values)
    expected, sticks = scipy_log_joint(values, data, density.priors)
    alpha = float(values["alpha"])
    exponentials = -alpha * np.log1p(-sticks)
    np.testing.assert_allclose(np.exp(position["weights_exponentials"]), exponentials, rtol=1e-4)
    remaining = np.cumsum(np.asarray(values["weights"], np.float64)[::-1])[::-1][:-1]
    # d w / d v (triangular: prod of remaining sticks) times d v / d u.
    log_dv_du = -exponentials / alpha - np.log(alpha) + np.log(exponentials)
    log_jacobian = np.sum(np.log(remaining) + log_dv_du)
    log_jacobian += np.log(alpha) + np.sum(np.log(np.asarray(values["scale"])))
    # Standardised locations: loc = mean(x) + (std(x) / 5) * z.
    log_jacobian += len(values["loc"]) * np.log(np.std(data, dtype=np.float64) / UNITS_PER_SPREAD)
    actual = density.potential_fn(position, density.data)
    np.testing.assert_allclose(float(actual), -(expected + log_jacobian), rtol=2e-5)


@pytest.mark.parametrize("num_centered", [1, 2, 3, 7])
def test_partly_centred_potential_is_the_log_joint_plus_its_own_jacobian(point, num_centered):  # noqa: F811
    """The first sticks as logit(v_k) under Beta(1, alpha), the rest as log e_k.

    7 is more than the 3 sticks of 4 components: all are centred.
    """
    data, values = point
    density = rechart(
        build_log_density(data, num_components=4, parameterization="noncentered"), num_centered
    )
    centred = min(num_centered, 3)
    assert density.num_centered_sticks == centred
    position = density.unconstrain_fn(values)
    expected, sticks = scipy_log_joint(values, data, density.priors)
    alpha = float(values["alpha"])
    exponentials = -alpha * np.log1p(-sticks)
    np.testing.assert_allclose(
        1 / (1 + np.exp(-np.asarray(position["weights_logits"]))), sticks[:centred], rtol=1e-5
    )
    if centred < 3:
        np.testing.assert_allclose(
            np.exp(position["weights_exponentials"]), exponentials[centred:], rtol=1e-4
        )
    else:
        assert "weights_exponentials" not in position
    remaining = np.cumsum(np.asarray(values["weights"], np.float64)[::-1])[::-1][:-1]
    # Centred: d v / d u = v (1 - v); non-centred as in the test above.
    log_dv_du = np.where(
        np.arange(3) < centred,
        np.log(sticks) + np.log1p(-sticks),
        -exponentials / alpha - np.log(alpha) + np.log(exponentials),
    )
    log_jacobian = np.sum(np.log(remaining) + log_dv_du)
    log_jacobian += np.log(alpha) + np.sum(np.log(np.asarray(values["scale"])))
    log_jacobian += len(values["loc"]) * np.log(np.std(data, dtype=np.float64) / UNITS_PER_SPREAD)
    actual = density.potential_fn(position, density.data)
    np.testing.assert_allclose(float(actual), -(expected + log_jacobian), rtol=2e-5)
    # The same log joint as the other charts, and the position maps back.
    np.testing.assert_allclose(
        float(density.log_joint_fn(position, density.data)), expected, rtol=2e-5
    )
    back = density.constrain_fn(position)
    for name, value in values.items():
        np.testing.assert_allclose(back[name], value, rtol=2e-5, err_msg=name)


def test_rechart_needs_the_noncentred_chart(rng):
    density = build_log_density(rng.normal(size=10), num_components=3)
    with pytest.raises(ValueError, match="parameterization='noncentered'"):
        rechart(density, 1)
    with pytest.raises(ValueError, match="num_centered must be a non-negative int"):
        NonCenteredStickBreaking(num_centered=-1)


def test_both_charts_give_the_same_log_joint_and_round_trip(point):  # noqa: F811
    data, values = point
    centered = build_log_density(data, num_components=4)
    noncentered = build_log_density(data, num_components=4, parameterization="noncentered")
    positions = [d.unconstrain_fn(values) for d in (centered, noncentered)]
    joints = [float(d.log_joint_fn(p, d.data)) for d, p in zip((centered, noncentered), positions)]
    np.testing.assert_allclose(joints[0], joints[1], rtol=1e-6)
    back = noncentered.constrain_fn(positions[1])
    for name, value in values.items():
        np.testing.assert_allclose(back[name], value, rtol=2e-5, err_msg=name)
    # The potentials differ exactly by the difference of the two log-Jacobians;
    # the unit-exponential prior of the new coordinates does not involve alpha.
    assert set(positions[1]) == {"alpha", "weights_exponentials", "loc", "scale"}


def test_prior_part_of_the_sticks_does_not_depend_on_alpha(rng):
    """Potential minus likelihood, in the sticks' coordinates u: sum(exp(u) - u)."""
    data = rng.normal(size=20).astype(np.float32)
    density = build_log_density(data, num_components=5, parameterization="noncentered")

    def prior_potential(position):
        values = density.constrain_fn(position)
        mixture = GaussianMixture(values["weights"], values["loc"], values["scale"])
        return density.potential_fn(position, density.data) + jnp.sum(mixture.log_prob(data))

    position = dict(density.init_position)
    for shift in (0.0, -2.0, 1.5):  # alpha = exp(shift)
        where = dict(position, alpha=position["alpha"] + shift)
        grad = jax.grad(prior_potential)(where)["weights_exponentials"]
        u = where["weights_exponentials"]
        np.testing.assert_allclose(grad, np.exp(u) - 1, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_centered", [0, 2])
def test_reparameterised_site_has_the_gem_distribution(num_centered):
    """Same weights distribution as the centred site: GEM means and the first stick's law."""
    alpha, num_draws = 1.7, 40_000

    def weights_only():
        numpyro.sample("weights", StickBreakingWeights(alpha, 5))

    chart = NonCenteredStickBreaking(num_centered=num_centered)
    model = reparam(weights_only, config={"weights": chart})
    draws = np.asarray(
        Predictive(model, num_samples=num_draws)(jax.random.PRNGKey(1))["weights"], np.float64
    )
    np.testing.assert_allclose(draws.sum(-1), 1.0, atol=1e-5)
    expected = np.asarray(StickBreakingWeights(alpha, 5).mean)
    standard_error = draws.std(0) / np.sqrt(num_draws)
    assert np.all(np.abs(draws.mean(0) - expected) < 5 * standard_error)
    assert stats.kstest(draws[:4000, 0], stats.beta(1.0, alpha).cdf).pvalue > 1e-3
    second_stick = draws[:4000, 1] / (1.0 - draws[:4000, 0])
    assert stats.kstest(second_stick, stats.beta(1.0, alpha).cdf).pvalue > 1e-3
    third_stick = draws[:4000, 2] / (1.0 - draws[:4000, 0] - draws[:4000, 1])
    assert stats.kstest(third_stick, stats.beta(1.0, alpha).cdf).pvalue > 1e-3


def test_exponentials_from_weights_inverts_the_map_in_the_tail():
    """Sticks close to 1 (a tail of tiny weights) keep their exponentials in float32."""
    exponentials = jnp.asarray([0.3, 4.0, 9.0, 0.01], jnp.float32)
    alpha = jnp.float32(0.5)
    log1m = -exponentials / alpha
    log_remaining = jnp.concatenate([jnp.zeros(1), jnp.cumsum(log1m)])
    log_weights = jnp.concatenate([log_remaining[:-1] + jnp.log(-jnp.expm1(log1m)), log_remaining[-1:]])
    weights = jnp.exp(log_weights)
    np.testing.assert_allclose(exponentials_from_weights(weights, alpha), exponentials, rtol=1e-4)


def test_reparam_refuses_other_sites():
    model = reparam(dpgmm, config={"alpha": NonCenteredStickBreaking()})
    with pytest.raises(TypeError, match="StickBreakingWeights"):
        Predictive(model, num_samples=1)(jax.random.PRNGKey(0), num_components=3, num_data=2)


def test_unknown_parameterization_is_refused(rng):
    with pytest.raises(ValueError, match="parameterization"):
        build_log_density(rng.normal(size=5), num_components=2, parameterization="whitened")


def test_backends_refuse_a_density_of_the_other_chart(rng):
    from dpgmm_ppl.infer.nuts import NUTS
    from dpgmm_ppl.infer.svi import SVI

    density = build_log_density(rng.normal(size=10), num_components=3)
    for backend in (SVI, NUTS):
        options = {**backend.defaults, "parameterization": "noncentered"}
        with pytest.raises(ValueError, match="density was built with parameterization='centered'"):
            backend.run(jax.random.PRNGKey(0), density, num_chains=1, **options)
    assert density.trace_counts["potential_fn"] == 0


def test_stick_logit_density_is_the_beta_in_logit_coordinates_and_stays_finite():
    from dpgmm_ppl.reparam import StickLogit

    u = np.linspace(-12.0, 12.0, 25)
    v = 1 / (1 + np.exp(-u))
    for alpha in (0.3, 1.0, 4.0):
        expected = stats.beta.logpdf(v, 1.0, alpha) + np.log(v) + np.log1p(-v)
        actual = np.asarray(StickLogit(jnp.float32(alpha)).log_prob(jnp.asarray(u, jnp.float32)))
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    # Where sigmoid(u) rounds to 1 in float32 the density stays finite: alpha
    # log(1 - v) is about -alpha u there.
    far = StickLogit(jnp.float32(0.3)).log_prob(jnp.float32(40.0))
    np.testing.assert_allclose(float(far), np.log(0.3) - 0.3 * 40.0, rtol=1e-5)


def test_coordinates_from_log_weights_invert_the_weights_below_float32_s_range():
    """Weights of 1e-60 (0 in float32) keep finite, exact coordinates through their logs."""
    from dpgmm_ppl.reparam import coordinates_from_log_weights, log_weights_from_coordinates

    alpha = jnp.float32(0.4)
    log_weights = jnp.log(jnp.asarray([0.6, 0.3], jnp.float32))
    log_weights = jnp.concatenate([log_weights, jnp.log(jnp.float32(0.1)) + jnp.asarray(
        [-0.5, -140.0, -141.0, -150.0], jnp.float32)])
    log_weights = log_weights - jax.scipy.special.logsumexp(log_weights)
    for centred in (0, 2, 5):
        logits, exponentials = coordinates_from_log_weights(log_weights, alpha, centred)
        assert logits.shape == (centred,) and exponentials.shape == (5 - centred,)
        assert np.all(np.isfinite(logits)) and np.all(np.isfinite(np.log(exponentials)))
        back = log_weights_from_coordinates(
            alpha, logits if centred else None, exponentials if centred < 5 else None
        )
        np.testing.assert_allclose(back, log_weights, rtol=1e-4, atol=1e-4)
    # The same sticks in float64 from the weights written out.
    weights = np.exp(np.asarray(log_weights, np.float64))
    remaining = np.cumsum(weights[::-1])[::-1]
    sticks = weights[:-1] / remaining[:-1]
    logits, exponentials = coordinates_from_log_weights(log_weights, alpha, 1)
    np.testing.assert_allclose(logits[0], np.log(sticks[0] / (1 - sticks[0])), rtol=1e-4)
    np.testing.assert_allclose(exponentials[0], -0.4 * np.log1p(-sticks[1]), rtol=1e-4)
