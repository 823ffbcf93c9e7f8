"""The NumPyro model and the shared log-density against an independent scipy computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from scipy import stats
from scipy.special import expit, logsumexp

from dpgmm_ppl import Priors, build_log_density, dpgmm
from dpgmm_ppl._frame import UNITS_PER_SPREAD


def scipy_log_joint(values, data, priors):
    """log p(alpha, weights, loc, scale, data), written out with scipy."""
    alpha = float(values["alpha"])
    weights = np.asarray(values["weights"], np.float64)
    loc = np.asarray(values["loc"], np.float64)
    scale = np.asarray(values["scale"], np.float64)
    remaining = np.cumsum(weights[::-1])[::-1]
    sticks = weights[:-1] / remaining[:-1]
    log_p = stats.gamma.logpdf(alpha, priors.alpha_shape, scale=1 / priors.alpha_rate)
    log_p += np.sum(stats.beta.logpdf(sticks, 1.0, alpha)) - np.sum(np.log(remaining[:-1]))
    log_p += np.sum(stats.norm.logpdf(loc, priors.loc_mean, priors.loc_scale))
    log_p += np.sum(
        stats.invgamma.logpdf(scale, priors.scale_shape, scale=priors.scale_rate)
    )
    component = stats.norm.logpdf(np.asarray(data, np.float64)[:, None], loc, scale)
    if component.ndim == 3:
        component = component.sum(-1)
    log_p += np.sum(logsumexp(np.log(weights) + component, axis=1))
    return log_p, sticks


@pytest.fixture
def point(rng):
    data = np.concatenate([rng.normal(-3, 1, 60), rng.normal(4, 0.5, 40)]).astype(np.float32)
    values = {
        "alpha": jnp.float32(0.8),
        "weights": jnp.asarray([0.45, 0.35, 0.15, 0.05], jnp.float32),
        "loc": jnp.asarray([-3.0, 4.0, 0.5, 9.0], jnp.float32),
        "scale": jnp.asarray([1.1, 0.4, 2.0, 0.7], jnp.float32),
    }
    return data, values


def test_log_joint_matches_scipy(point):
    data, values = point
    density = build_log_density(data, num_components=4)
    position = density.unconstrain_fn(values)
    expected, _ = scipy_log_joint(values, data, density.priors)
    actual = density.log_joint_fn(position, density.data)
    np.testing.assert_allclose(float(actual), expected, rtol=2e-5)


def test_potential_adds_the_jacobian_of_numpyro_transforms(point):
    data, values = point
    density = build_log_density(data, num_components=4)
    position = density.unconstrain_fn(values)
    expected, sticks = scipy_log_joint(values, data, density.priors)
    remaining = np.cumsum(np.asarray(values["weights"])[::-1])[::-1][:-1]
    # exp for alpha and the scales; for the weights, logistic sticks then stick breaking.
    log_jacobian = np.log(float(values["alpha"])) + np.sum(np.log(np.asarray(values["scale"])))
    log_jacobian += np.sum(np.log(sticks) + np.log1p(-sticks) + np.log(remaining))
    # The locations' coordinates are standardised: loc = mean(x) + (std(x) / 5) * z.
    center = float(np.mean(data, dtype=np.float64))
    unit = float(np.std(data, dtype=np.float64)) / UNITS_PER_SPREAD
    np.testing.assert_allclose(position["loc"], (np.asarray(values["loc"]) - center) / unit, rtol=1e-5)
    log_jacobian += len(values["loc"]) * np.log(unit)
    actual = density.potential_fn(position, density.data)
    np.testing.assert_allclose(float(actual), -(expected + log_jacobian), rtol=2e-5)
    # The logistic sticks are NumPyro's own: check the position decodes to our sticks.
    offsets = np.log(3 - np.arange(3))
    np.testing.assert_allclose(expit(np.asarray(position["weights"]) - offsets), sticks, rtol=1e-4)


def test_log_joint_matches_scipy_for_vector_data(rng):
    data = rng.normal(size=(50, 3)).astype(np.float32)
    priors = Priors(loc_mean=[0.0, 1.0, -1.0], loc_scale=2.0, scale_rate=[0.5, 1.0, 1.5])
    density = build_log_density(data, num_components=3, priors=priors)
    values = {
        "alpha": jnp.float32(1.3),
        "weights": jnp.asarray([0.5, 0.3, 0.2]),
        "loc": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32),
        "scale": jnp.asarray(rng.uniform(0.5, 2, size=(3, 3)), jnp.float32),
    }
    expected, _ = scipy_log_joint(values, data, density.priors)
    actual = density.log_joint_fn(density.unconstrain_fn(values), density.data)
    np.testing.assert_allclose(float(actual), expected, rtol=2e-5)


def test_default_priors_are_scaled_from_the_data(rng):
    data = rng.normal(100.0, 7.0, size=(500, 2)) * np.array([1.0, 1000.0])
    priors = Priors().resolve(data)
    np.testing.assert_allclose(priors.loc_mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(priors.loc_scale, 2 * data.std(0), rtol=1e-6)
    # The documented default: the rate is the spread (docs/mle-collapse.md).
    np.testing.assert_allclose(priors.scale_rate, data.std(0), rtol=1e-6)
    assert Priors(scale_rate=3.0).resolve(data).scale_rate.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("dim", [None, 3])
def test_prior_predictive_site_shapes(dim):
    draws = Predictive(dpgmm, num_samples=4)(
        jax.random.PRNGKey(0), num_components=6, num_data=11, dim=dim
    )
    event = () if dim is None else (dim,)
    assert draws["alpha"].shape == (4,)
    assert draws["weights"].shape == (4, 6)
    assert draws["loc"].shape == (4, 6) + event
    assert draws["scale"].shape == (4, 6) + event
    assert draws["obs"].shape == (4, 11) + event
    np.testing.assert_allclose(draws["weights"].sum(-1), 1.0, atol=1e-5)
    assert bool(jnp.all(draws["scale"] > 0))


def test_prior_predictive_matches_the_priors():
    """Prior draws of alpha and loc have the prior's moments (5 standard errors)."""
    num_samples = 4000
    draws = Predictive(dpgmm, num_samples=num_samples)(
        jax.random.PRNGKey(1), num_components=3, num_data=2,
        priors=Priors(alpha_shape=2.0, alpha_rate=4.0, loc_mean=1.0, loc_scale=3.0, scale_rate=1.0),
    )
    alpha = np.asarray(draws["alpha"])
    assert abs(alpha.mean() - 0.5) < 5 * np.sqrt(2.0 / 16.0 / num_samples)
    loc = np.asarray(draws["loc"]).ravel()
    assert abs(loc.mean() - 1.0) < 5 * 3.0 / np.sqrt(loc.size)
    assert abs(loc.std() - 3.0) < 0.1


def test_scale_prior_removes_the_collapse_singularity():
    """With one point on a component, the log joint falls, not rises, as scale -> 0."""
    data = np.array([0.0, 5.0, 5.5, 6.0, 4.5], np.float32)
    density = build_log_density(data, num_components=2)
    values = {
        "alpha": jnp.float32(1.0),
        "weights": jnp.asarray([0.2, 0.8]),
        "loc": jnp.asarray([0.0, 5.25]),
        "scale": jnp.asarray([1.0, 0.6]),
    }
    log_joint = []
    for collapsed in (1e-1, 1e-2, 1e-3, 1e-4):
        values["scale"] = jnp.asarray([collapsed, 0.6], jnp.float32)
        log_joint.append(float(density.log_joint_fn(density.unconstrain_fn(values), density.data)))
    assert all(np.isfinite(log_joint))
    assert all(later < earlier for earlier, later in zip(log_joint, log_joint[1:]))


def test_fixed_scale_makes_scale_a_known_constant(rng):
    data = rng.normal(size=30).astype(np.float32)
    density = build_log_density(data, num_components=1, priors=Priors(fixed_scale=1.0))
    assert "scale" not in density.init_position
    assert set(density.init_position) == {"alpha", "loc", "weights"}
    values = density.constrain_fn(density.init_position)
    np.testing.assert_array_equal(values["scale"], [1.0])
    # Only loc and alpha carry density: the log joint is Normal-Normal plus Gamma.
    loc = float(values["loc"][0])
    expected = stats.gamma.logpdf(float(values["alpha"]), 1.0) + stats.norm.logpdf(
        loc, density.priors.loc_mean, density.priors.loc_scale
    ) + np.sum(stats.norm.logpdf(data, loc, 1.0))
    actual = density.log_joint_fn(density.init_position, density.data)
    np.testing.assert_allclose(float(actual), expected, rtol=1e-5)


def test_half_normal_scale_prior_would_not_remove_the_singularity():
    """The contrast the default prior exists for: with a half-normal prior the
    log joint of a component sitting on one point grows without bound."""
    x, others = 0.0, np.array([5.0, 5.5, 6.0, 4.5])

    def log_joint(scale, log_prior):
        density = 0.2 * stats.norm.pdf(x, 0.0, scale) + 0.8 * stats.norm.pdf(x, 5.25, 0.6)
        rest = np.log(0.2 * stats.norm.pdf(others, 0.0, scale) + 0.8 * stats.norm.pdf(others, 5.25, 0.6))
        return np.log(density) + rest.sum() + log_prior(scale)

    half_normal = lambda s: stats.halfnorm.logpdf(s, scale=2.0)
    ours = lambda s: stats.invgamma.logpdf(s, 2.0, scale=0.5 * np.std(np.r_[x, others]))
    scales = [1e-1, 1e-2, 1e-3, 1e-4]
    with_half_normal = [log_joint(s, half_normal) for s in scales]
    with_ours = [log_joint(s, ours) for s in scales]
    assert all(b > a for a, b in zip(with_half_normal, with_half_normal[1:]))
    assert all(b < a for a, b in zip(with_ours, with_ours[1:]))


def test_masked_rows_leave_the_log_joint_as_scipy_computes_it_without_them(point):
    """``mask`` drops rows from the likelihood: the model on data plus three
    masked junk rows has the log joint scipy gives for the data alone."""
    from numpyro.infer.util import log_density

    data, values = point
    priors = Priors().resolve(data)
    padded = np.concatenate([data, np.float32([1e3, -7.0, 0.0])])
    mask = np.arange(padded.size) < data.size
    kwargs = {"num_components": 4, "priors": priors}
    masked, _ = log_density(dpgmm, (), {"data": padded, "mask": mask, **kwargs}, values)
    expected, _ = scipy_log_joint(values, data, priors)
    np.testing.assert_allclose(float(masked), expected, rtol=2e-5)
