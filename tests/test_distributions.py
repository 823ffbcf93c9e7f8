"""StickBreakingWeights and GaussianMixture against closed forms and scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from dpgmm_ppl.distributions import (
    GaussianMixture,
    StickBreakingWeights,
    stick_breaking,
    sticks_from_weights,
)


def reference_stick_log_prob(weights, alpha):
    """Density of simplex weights: Beta densities of the sticks / Jacobian."""
    weights = np.asarray(weights, np.float64)
    remaining = np.cumsum(weights[::-1])[::-1]
    sticks = weights[:-1] / remaining[:-1]
    return np.sum(stats.beta.logpdf(sticks, 1.0, alpha)) - np.sum(np.log(remaining[:-1]))


def test_stick_breaking_round_trip(rng):
    sticks = rng.uniform(0.01, 0.99, size=(200, 7))
    weights = stick_breaking(jnp.asarray(sticks, jnp.float32))
    np.testing.assert_allclose(np.sum(weights, -1), 1.0, atol=2e-6)
    recovered = sticks_from_weights(weights)
    np.testing.assert_allclose(recovered, sticks, rtol=2e-4)
    expected_first = sticks[:, 0]
    expected_second = sticks[:, 1] * (1 - sticks[:, 0])
    np.testing.assert_allclose(weights[:, 0], expected_first, rtol=1e-6)
    np.testing.assert_allclose(weights[:, 1], expected_second, rtol=1e-5)


@pytest.mark.parametrize("stick", [1e-30, 1e-7, 0.5, 1 - 1e-7, 1.0 - 2**-24])
def test_weights_stay_on_simplex_in_float32_for_extreme_sticks(stick):
    sticks = jnp.full((49,), stick, jnp.float32)
    weights = stick_breaking(sticks)
    assert weights.dtype == jnp.float32
    assert bool(jnp.all(weights >= 0)) and bool(jnp.all(jnp.isfinite(weights)))
    assert abs(float(jnp.sum(weights)) - 1.0) < 1e-5


@pytest.mark.parametrize("alpha", [1e-3, 0.05, 1.0, 50.0])
def test_samples_stay_on_simplex_in_float32(alpha):
    weights = StickBreakingWeights(jnp.float32(alpha), 50).sample(
        jax.random.PRNGKey(3), (2000,)
    )
    assert weights.dtype == jnp.float32
    assert bool(jnp.all(weights >= 0)) and bool(jnp.all(jnp.isfinite(weights)))
    np.testing.assert_allclose(jnp.sum(weights, -1), 1.0, atol=1e-5)
    log_prob = StickBreakingWeights(jnp.float32(alpha), 50).log_prob(weights)
    assert bool(jnp.all(jnp.isfinite(log_prob)))


def test_log_prob_matches_beta_densities_of_sticks(rng):
    for alpha in (0.3, 1.0, 4.0):
        weights = rng.dirichlet(np.ones(6), size=20)
        expected = [reference_stick_log_prob(w, alpha) for w in weights]
        actual = StickBreakingWeights(alpha, 6).log_prob(jnp.asarray(weights, jnp.float32))
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)


def test_two_components_is_a_beta_density():
    first = np.linspace(0.01, 0.99, 25)
    weights = np.stack([first, 1 - first], -1)
    actual = StickBreakingWeights(2.5, 2).log_prob(jnp.asarray(weights))
    np.testing.assert_allclose(actual, stats.beta.logpdf(first, 1.0, 2.5), rtol=1e-5, atol=1e-6)


def test_sample_mean_matches_the_gem_mean():
    """E[w_k] = a^(k-1) / (1+a)^k; Monte-Carlo tolerance of 5 standard errors."""
    alpha, num_draws = 1.7, 40_000
    distribution = StickBreakingWeights(alpha, 5)
    draws = np.asarray(distribution.sample(jax.random.PRNGKey(0), (num_draws,)))
    ratio = alpha / (1 + alpha)
    expected = np.array([ratio**k / (1 + alpha) for k in range(4)] + [ratio**4])
    np.testing.assert_allclose(distribution.mean, expected, rtol=1e-6)
    standard_error = draws.std(0) / np.sqrt(num_draws)
    assert np.all(np.abs(draws.mean(0) - expected) < 5 * standard_error)
    # The first stick is Beta(1, alpha): check the whole distribution, not just the mean.
    p_value = stats.kstest(draws[:2000, 0], stats.beta(1.0, alpha).cdf).pvalue
    assert p_value > 1e-3


def test_gaussian_mixture_matches_scipy_1d_and_diagonal(rng):
    weights = np.array([0.2, 0.5, 0.3])
    loc = rng.normal(size=3)
    scale = rng.uniform(0.5, 2.0, size=3)
    x = rng.normal(size=40) * 3
    expected = logsumexp(np.log(weights) + stats.norm.logpdf(x[:, None], loc, scale), axis=1)
    actual = GaussianMixture(weights, loc, scale).log_prob(jnp.asarray(x))
    np.testing.assert_allclose(actual, expected, rtol=1e-5)

    loc2, scale2 = rng.normal(size=(3, 2)), rng.uniform(0.5, 2.0, size=(3, 2))
    x2 = rng.normal(size=(40, 2)) * 3
    per_component = stats.norm.logpdf(x2[:, None, :], loc2, scale2).sum(-1)
    expected2 = logsumexp(np.log(weights) + per_component, axis=1)
    actual2 = GaussianMixture(weights, loc2, scale2).log_prob(jnp.asarray(x2))
    np.testing.assert_allclose(actual2, expected2, rtol=1e-5)


def naive_component_log_prob(weights, loc, scale, x):
    """The direct form, z = (x - loc) / scale per (point, component[, dim]), in jax.numpy."""
    is_vector = jnp.ndim(loc) >= 2
    x = x[..., None, :] if is_vector else x[..., None]
    z = (x - loc) / scale
    log_normal = -0.5 * z**2 - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi)
    if is_vector:
        log_normal = jnp.sum(log_normal, -1)
    return jnp.log(weights) + log_normal


def naive_log_prob(weights, loc, scale, x):
    return jax.scipy.special.logsumexp(naive_component_log_prob(weights, loc, scale, x), -1)


def scipy_component_log_prob(weights, loc, scale, x):
    """log w_k + log N(x | k) in float64 with scipy."""
    per_component = stats.norm.logpdf(x[:, None], loc, scale)
    if loc.ndim == 2:
        per_component = per_component.sum(-1)
    return np.log(weights) + per_component


def mixture_case(rng, dim, num_data=300):
    """Four components (one far from the others), points drawn from the mixture."""
    weights = np.array([0.1, 0.5, 0.05, 0.35])
    shape = (4,) if dim is None else (4, dim)
    shift = np.array([0.0, 0.0, 0.0, 12.0]).reshape((4,) + (1,) * (len(shape) - 1))
    loc = 4 * rng.normal(size=shape) + shift
    scale = rng.uniform(0.3, 2.0, size=shape)
    labels = rng.choice(4, size=num_data, p=weights)
    return weights, loc, scale, rng.normal(loc[labels], scale[labels])


FRAMES = [{}, {"center": 5.0, "unit": 0.01}, {"center": -20.0, "unit": 40.0}]


@pytest.mark.parametrize("dim", [None, 3])
@pytest.mark.parametrize("frame", FRAMES)
def test_gaussian_mixture_equals_the_direct_form_in_float64(rng, dim, frame):
    """Exact: whatever the centre and unit, the direct form's value and scipy's.

    Tolerance: float64 eps times the size of the expanded terms, at most
    (|x - c| + |mu - c|)^2 / (2 sigma^2) ~ 5e4 here, so ~1e-11.
    """
    weights, loc, scale, x = mixture_case(rng, dim)
    reference = scipy_component_log_prob(weights, loc, scale, x)
    with jax.enable_x64(True):
        mixture = GaussianMixture(weights, loc, scale, **frame)
        components = mixture.component_log_prob(x)
        direct = naive_component_log_prob(weights, loc, scale, jnp.asarray(x))
        log_prob = mixture.log_prob(x)
    assert log_prob.dtype == jnp.float64
    np.testing.assert_allclose(components, direct, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(components, reference, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(log_prob, logsumexp(reference, axis=1), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("dim", [None, 2])
def test_component_log_prob_shapes(dim):
    event = () if dim is None else (dim,)
    loc = jnp.zeros((5,) + event)
    mixture = GaussianMixture(jnp.full(5, 0.2), loc, jnp.ones_like(loc))
    assert mixture.component_log_prob(jnp.zeros(event)).shape == (5,)
    assert mixture.component_log_prob(jnp.zeros((7,) + event)).shape == (7, 5)
    assert mixture.component_log_prob(jnp.zeros((3, 7) + event)).shape == (3, 7, 5)
    assert mixture.log_prob(jnp.zeros((3, 7) + event)).shape == (3, 7)


def float32_error_bound(weights, loc, scale, x, center):
    r"""First-order bound on the float32 rounding error of the expanded form, per point.

    Component k's term is a sum whose parts have magnitudes adding up to
    :math:`B_{nk} = (|x_n - c| + |\mu_k - c|)^2 / (2\sigma_k^2) + |\log\sigma_k|
    + \tfrac12\log 2\pi + |\log w_k|`, each part rounded a few times, so its
    error is a small multiple of :math:`\epsilon B_{nk}`; the logsumexp
    passes on the responsibility-weighted mean of those errors and adds about
    :math:`\epsilon |\log p(x_n)|` of its own. Returns
    :math:`\epsilon (\sum_k r_{nk} B_{nk} + |\log p(x_n)|)` and the float64
    :math:`\log p(x_n)`. Without the centring, data at :math:`10^6` put
    :math:`10^{12}/\sigma^2` into :math:`B`.
    """
    components = scipy_component_log_prob(weights, loc, scale, x)
    reference = logsumexp(components, axis=1)
    responsibilities = np.exp(components - reference[:, None])
    width = (np.abs(x - center)[:, None] + np.abs(loc - center)) ** 2 / (2 * scale**2)
    size = width + np.abs(np.log(scale)) + 0.5 * np.log(2 * np.pi)
    if loc.ndim == 2:
        size = size.sum(-1)
    size = size + np.abs(np.log(weights))
    bound = np.finfo(np.float32).eps * (np.sum(responsibilities * size, 1) + np.abs(reference))
    return bound, reference


@pytest.mark.parametrize("dim", [None, 2])
@pytest.mark.parametrize(
    "offset, factor",
    [(0.0, 1.0), (1e6, 1.0), (0.0, 1e6), (0.0, 1e-6), (0.0, 1e20), (0.0, 1e-20), (-1e6, 1e-6)],
)
@pytest.mark.parametrize("is_model_frame", [False, True])
def test_gaussian_mixture_keeps_float32_precision_far_from_zero(
    rng, dim, offset, factor, is_model_frame
):
    """Data offset by 1e6, or in units 1e6 (and 1e20) times larger or smaller.

    The inputs are rounded to float32 once and the float64 reference takes
    the same rounded values, so only the evaluation's own error is measured.
    Tolerance: 4x :func:`float32_error_bound` (the error measured here stays
    under 0.75x of it), which is itself below 1e-5 x (1 + |log p|): float32
    sized. Without the centring the error at 1e6 is ~1e5 nats; without the
    unit the coefficients overflow at 1e20 and 1e-20.
    """
    weights, loc, scale, x = mixture_case(rng, dim, num_data=2000)
    x32 = (factor * (x + offset)).astype(np.float32)
    loc32 = (factor * (loc + offset)).astype(np.float32)
    scale32 = (factor * scale).astype(np.float32)
    weights32 = weights.astype(np.float32)
    if is_model_frame:  # as dpgmm does: the location prior's centre and spread
        center = x32.astype(np.float64).mean(0).astype(np.float32)
        frame = {"center": center, "unit": (2 * x32.astype(np.float64).std(0)).astype(np.float32)}
    else:  # the default: the mean of the locations
        center, frame = loc32.mean(0), {}
    mixture = GaussianMixture(weights32, loc32, scale32, **frame)
    actual = mixture.log_prob(jnp.asarray(x32))
    assert actual.dtype == jnp.float32
    as64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    bound, reference = float32_error_bound(
        as64(weights32), as64(loc32), as64(scale32), as64(x32), as64(center)
    )
    assert np.max(bound / (1 + np.abs(reference))) < 1e-5
    np.testing.assert_array_less(np.abs(as64(actual) - reference), 4 * bound)


@pytest.mark.parametrize("dim", [None, 2])
def test_gaussian_mixture_derivatives_equal_the_direct_form_in_float64(rng, dim):
    """Gradients in weights, loc, scale and the data; forward mode and Hessians too."""
    weights, loc, scale, x = mixture_case(rng, dim, num_data=20)

    def ours(weights, loc, scale, x):
        return GaussianMixture(weights, loc, scale, center=3.0, unit=7.0).log_prob(x).sum()

    def direct(weights, loc, scale, x):
        return naive_log_prob(weights, loc, scale, x).sum()

    with jax.enable_x64(True):
        args = tuple(jnp.asarray(a) for a in (weights, loc, scale, x))
        for derivative in (jax.grad, jax.jacfwd, jax.hessian):
            actual, expected = (
                jax.jit(derivative(f, argnums=(0, 1, 2, 3)))(*args) for f in (ours, direct)
            )
            for a, e in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)):
                np.testing.assert_allclose(a, e, rtol=1e-9, atol=1e-9, err_msg=derivative.__name__)


@pytest.mark.parametrize("dim", [None, 2])
def test_gaussian_mixture_gradient_is_finite_with_zero_weights(dim):
    event = () if dim is None else (dim,)
    loc = jnp.stack([jnp.zeros(event), jnp.full(event, 5.0), jnp.full(event, -40.0)])
    x = jnp.stack([jnp.full(event, 0.1), jnp.full(event, -0.3)])

    def total(weights, loc, scale):
        return GaussianMixture(weights, loc, scale).log_prob(x).sum()

    grads = jax.grad(total, argnums=(0, 1, 2))(jnp.array([1.0, 0.0, 0.0]), loc, jnp.ones_like(loc))
    for grad in grads:
        assert bool(jnp.all(jnp.isfinite(grad)))
    # Components without weight do not move the density.
    assert float(jnp.max(jnp.abs(grads[1][1:]))) == 0.0
    assert float(jnp.max(jnp.abs(grads[2][1:]))) == 0.0


def test_gaussian_mixture_rejects_a_frame_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"center must broadcast to the event shape \(3,\)"):
        GaussianMixture(jnp.full(2, 0.5), jnp.zeros((2, 3)), jnp.ones((2, 3)), center=jnp.zeros(2))
    with pytest.raises(ValueError, match="unit must broadcast"):
        GaussianMixture(jnp.full(2, 0.5), jnp.zeros(2), jnp.ones(2), unit=jnp.ones(2))


def test_model_likelihood_keeps_float32_precision_for_offset_data(rng):
    """dpgmm centres its likelihood on the location prior: data at 1e6 lose no float32 digits."""
    from numpyro.infer.util import log_density

    from dpgmm_ppl import Priors, dpgmm

    weights, loc, scale, x = mixture_case(rng, None, num_data=2000)
    x32 = (x + 1e6).astype(np.float32)
    values = {
        "alpha": np.float32(1.0),
        "weights": weights.astype(np.float32),
        "loc": (loc + 1e6).astype(np.float32),
        "scale": scale.astype(np.float32),
    }
    kwargs = {"num_components": 4, "priors": Priors().resolve(x32)}
    _, trace = log_density(dpgmm, (jnp.asarray(x32),), kwargs, values)
    actual = trace["obs"]["fn"].log_prob(trace["obs"]["value"])
    assert actual.dtype == jnp.float32
    as64 = {name: np.asarray(value, np.float64) for name, value in values.items()}
    bound, reference = float32_error_bound(
        as64["weights"], as64["loc"], as64["scale"], x32.astype(np.float64), x32.mean()
    )
    np.testing.assert_array_less(np.abs(np.asarray(actual, np.float64) - reference), 4 * bound)


def test_gaussian_mixture_samples_have_the_mixture_moments():
    weights, loc, scale = jnp.array([0.3, 0.7]), jnp.array([-2.0, 3.0]), jnp.array([0.5, 1.0])
    draws = np.asarray(GaussianMixture(weights, loc, scale).sample(jax.random.PRNGKey(1), (50_000,)))
    mean = 0.3 * -2.0 + 0.7 * 3.0
    variance = 0.3 * (0.25 + 4.0) + 0.7 * (1.0 + 9.0) - mean**2
    assert abs(draws.mean() - mean) < 5 * np.sqrt(variance / draws.size)
    assert abs(draws.var() - variance) / variance < 0.03


def test_one_component_takes_the_whole_stick():
    distribution = StickBreakingWeights(0.7, 1)
    np.testing.assert_array_equal(distribution.sample(jax.random.PRNGKey(0), (3,)), np.ones((3, 1)))
    assert float(distribution.log_prob(jnp.ones(1))) == 0.0


def _stick_jacobian_float64(x):
    """log|det J| of the stick-breaking map in float64: sum_k log y_k + log(1 - z_k)."""
    x = np.asarray(x, np.float64) - np.log(x.shape[-1] - np.arange(x.shape[-1]))
    z = 1.0 / (1.0 + np.exp(-x))
    remaining = np.concatenate([[1.0], np.cumprod(1.0 - z)[:-1]])
    return float(np.sum(np.log(z * remaining) + np.log1p(-z)))


def test_stick_breaking_log_jacobian_is_exact_and_finite_when_weights_underflow(rng):
    from numpyro.distributions.transforms import StickBreakingTransform, biject_to

    transform = biject_to(StickBreakingWeights(1.0, 13).support)
    for _ in range(50):
        x = rng.normal(0.0, 1.0 + 4.0 * rng.random(), 12).astype(np.float32)
        expected = _stick_jacobian_float64(x)
        actual = float(transform.log_abs_det_jacobian(jnp.asarray(x), transform(jnp.asarray(x))))
        np.testing.assert_allclose(actual, expected, rtol=2e-6, atol=1e-4)
    # Sticks that leave nothing after the first few: the tail weights underflow
    # in float32 and NumPyro's log y_k is -inf; the log-space sum is not.
    x = jnp.full(12, 40.0, jnp.float32)
    weights = transform(x)
    assert float(weights[-1]) == 0.0
    assert np.isneginf(float(StickBreakingTransform().log_abs_det_jacobian(x, weights)))
    finite = float(transform.log_abs_det_jacobian(x, weights))
    np.testing.assert_allclose(finite, _stick_jacobian_float64_clipped(np.full(12, 40.0)), rtol=1e-5)


def _stick_jacobian_float64_clipped(x):
    """The same in float64 with the forward map's float32 clipping of each fraction."""
    finfo = np.finfo(np.float32)
    x = np.asarray(x, np.float64) - np.log(x.shape[-1] - np.arange(x.shape[-1]))
    z = np.clip(1.0 / (1.0 + np.exp(-x)), finfo.tiny, 1.0 - finfo.eps)
    return float(np.sum(np.log(z) + np.cumsum(np.log1p(-z))))
