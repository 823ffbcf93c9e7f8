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


def test_gaussian_mixture_gradient_is_finite_with_zero_weights():
    def total(weights):
        return GaussianMixture(weights, jnp.array([0.0, 5.0]), jnp.ones(2)).log_prob(
            jnp.array([0.1, -0.3])
        ).sum()

    grad = jax.grad(total)(jnp.array([1.0, 0.0]))
    assert bool(jnp.all(jnp.isfinite(grad)))


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
