"""Tests for dpgmm_ppl.datasets: the notebook data, real data sets, true density."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from dpgmm_ppl.datasets import (
    Dataset,
    SeedMixture,
    _component_counts,
    galaxies,
    old_faithful,
    seed_mixture,
)

COUNTS = [2000, 10000, 1000, 6000]


def notebook_data():
    """The notebook's recipe, verbatim."""
    weights_true = jnp.array([2, 10, 1, 6])
    locs_true = jnp.array([-2.0, -5.0, 3.0, 8.0])
    scale_true = jnp.array([1.1, 2, 1.0, 1.5])
    base_n_draws = 1000
    key = jax.random.PRNGKey(42)
    keys = jax.random.split(key, 4)
    draws = [
        scale_true[i] * jax.random.normal(keys[i], shape=(int(base_n_draws * weights_true[i]),))
        + locs_true[i]
        for i in range(4)
    ]
    return np.asarray(jnp.concatenate(draws))


@pytest.fixture(scope="module")
def mix():
    return seed_mixture()


def test_seed_mixture_is_the_notebook_data_bit_for_bit(mix):
    expected = notebook_data()
    assert mix.data.dtype == np.float32
    assert mix.data.shape == (19000,)
    assert np.array_equal(mix.data, expected)
    assert np.array_equal(mix.data.view(np.uint32), expected.astype(np.float32).view(np.uint32))


def test_seed_mixture_equals_sample_with_key_42(mix):
    assert np.array_equal(SeedMixture.sample(jax.random.PRNGKey(42)).data, mix.data)
    assert np.array_equal(SeedMixture.sample(42).data, mix.data)


def test_true_parameters(mix):
    np.testing.assert_allclose(mix.weights, np.array([2, 10, 1, 6]) / 19, rtol=0, atol=1e-15)
    assert mix.weights.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(mix.loc, [-2.0, -5.0, 3.0, 8.0])
    np.testing.assert_array_equal(mix.scale, [1.1, 2.0, 1.0, 1.5])


def test_labels_follow_concatenation_order(mix):
    expected = np.repeat(np.arange(4), COUNTS)
    assert mix.labels.shape == (19000,)
    assert np.issubdtype(mix.labels.dtype, np.integer)
    np.testing.assert_array_equal(mix.labels, expected)


def test_component_moments_match_truth(mix):
    for k, n in enumerate(COUNTS):
        x = mix.data[mix.labels == k].astype(np.float64)
        assert x.size == n
        se_mean = mix.scale[k] / np.sqrt(n)
        se_std = mix.scale[k] / np.sqrt(2 * (n - 1))
        assert abs(x.mean() - mix.loc[k]) < 4 * se_mean
        assert abs(x.std(ddof=1) - mix.scale[k]) < 4 * se_std


def scipy_log_density(x, mix):
    comps = np.stack([stats.norm(m, s).pdf(x) for m, s in zip(mix.loc, mix.scale)], axis=-1)
    return np.log(comps @ mix.weights)


def test_log_density_matches_scipy(mix):
    x = np.linspace(-15.0, 20.0, 701)
    got = mix.log_density(x)
    assert got.shape == x.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, scipy_log_density(x, mix), rtol=0, atol=1e-10)
    # Also at the (float32) data points themselves.
    np.testing.assert_allclose(
        mix.log_density(mix.data[::97]), scipy_log_density(mix.data[::97].astype(np.float64), mix),
        rtol=0, atol=1e-10,
    )


def test_log_density_is_finite_far_in_the_tails(mix):
    # scipy's pdf underflows to 0 here; the log-space computation must not.
    x = np.array([-400.0, 400.0])
    got = mix.log_density(x)
    assert np.all(np.isfinite(got))
    logs = [np.log(w) + stats.norm(m, s).logpdf(x)
            for w, m, s in zip(mix.weights, mix.loc, mix.scale)]
    np.testing.assert_allclose(got, logsumexp(np.stack(logs), axis=0), rtol=1e-12)


def test_density_integrates_to_one(mix):
    grid, step = np.linspace(-30.0, 30.0, 60001, retstep=True)
    y = np.exp(mix.log_density(grid))
    total = (y.sum() - 0.5 * (y[0] + y[-1])) * step  # trapezoid rule
    assert total == pytest.approx(1.0, abs=1e-9)


def test_sample_new_key_differs_but_keeps_sizes(mix):
    other = SeedMixture.sample(jax.random.PRNGKey(7))
    assert other.data.shape == mix.data.shape and other.data.dtype == np.float32
    np.testing.assert_array_equal(np.bincount(other.labels), COUNTS)
    assert not np.array_equal(other.data, mix.data)
    assert np.mean(other.data == mix.data) < 0.01
    np.testing.assert_array_equal(other.weights, mix.weights)


def test_sample_same_key_is_reproducible():
    # Default size: reuses the shapes already compiled for the seed data.
    a = SeedMixture.sample(jax.random.PRNGKey(3))
    b = SeedMixture.sample(3)
    assert np.array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("num_data", [0, 1, 2, 3, 7, 19, 38, 100, 101, 999, 1234, 10**6 + 1])
def test_component_counts_sum_and_follow_weights(num_data):
    weights = np.array([2, 10, 1, 6]) / 19
    counts = _component_counts(num_data, weights)
    assert counts.sum() == num_data and np.all(counts >= 0)
    assert np.all(np.abs(counts - num_data * weights) < 1.0)


def test_component_counts_examples():
    weights = np.array([2, 10, 1, 6]) / 19
    np.testing.assert_array_equal(_component_counts(19000, weights), [2000, 10000, 1000, 6000])
    np.testing.assert_array_equal(_component_counts(100, weights), [10, 53, 5, 32])
    np.testing.assert_array_equal(_component_counts(101, weights), [11, 53, 5, 32])
    np.testing.assert_array_equal(_component_counts(2, weights), [0, 1, 0, 1])


def test_sample_with_custom_size():
    # Every new size compiles jax.random.normal for new shapes: keep it tiny.
    draw = SeedMixture.sample(5, num_data=2)
    assert draw.data.shape == (2,) and draw.data.dtype == np.float32
    np.testing.assert_array_equal(draw.labels, [1, 3])  # counts [0, 1, 0, 1]
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    scale, loc = jnp.array([1.1, 2, 1.0, 1.5]), jnp.array([-2.0, -5.0, 3.0, 8.0])
    expected = [scale[k] * jax.random.normal(keys[k], shape=(1,)) + loc[k] for k in (1, 3)]
    assert np.array_equal(draw.data, np.asarray(jnp.concatenate(expected)))
    assert np.array_equal(SeedMixture.sample(jax.random.PRNGKey(5), 2).data, draw.data)


@pytest.mark.parametrize("bad", [-1, 2.5])
def test_sample_rejects_bad_num_data(bad):
    with pytest.raises(ValueError):
        SeedMixture.sample(0, num_data=bad)


def test_old_faithful():
    ds = old_faithful()
    assert isinstance(ds, Dataset)
    assert ds.data.shape == (272, 2) and ds.data.dtype == np.float32
    assert ds.feature_names == ("eruptions", "waiting")
    assert ds.units == ("min", "min")
    means = ds.data.astype(np.float64).mean(axis=0)
    # Exact totals (thousandths of a minute; whole minutes), which catch any
    # single altered value that the rounded published means would miss.
    assert int(np.round(ds.data[:, 0].astype(np.float64) * 1000).sum()) == 948677
    assert int(ds.data[:, 1].astype(np.float64).sum()) == 19284
    np.testing.assert_allclose(means, [3.487783, 70.89706], rtol=1e-4)
    # R: summary(faithful) and sd().
    np.testing.assert_allclose(ds.data.min(axis=0), [1.6, 43.0], rtol=1e-6)
    np.testing.assert_allclose(ds.data.max(axis=0), [5.1, 96.0], rtol=1e-6)
    np.testing.assert_allclose(np.median(ds.data, axis=0), [4.0, 76.0], rtol=1e-6)
    np.testing.assert_allclose(ds.data.astype(np.float64).std(axis=0, ddof=1),
                               [1.141371, 13.594974], rtol=1e-5)
    np.testing.assert_allclose(ds.data[:3], [[3.6, 79], [1.8, 54], [3.333, 74]], rtol=1e-6)
    assert "faithful" in ds.description and "Azzalini" in ds.description


def test_galaxies_mass_version():
    ds = galaxies()
    assert ds.data.shape == (82,) and ds.data.dtype == np.float32
    assert ds.feature_names == ("velocity",) and ds.units == ("km/s",)
    v = ds.data.astype(np.float64)
    assert v.mean() == pytest.approx(20828.17, abs=0.005)
    assert v.sum() == 1707910.0
    assert v.min() == 9172.0 and v.max() == 34279.0
    assert np.all(np.diff(v) > 0)
    assert v[77] == 26690.0 and 26960.0 not in v
    np.testing.assert_array_equal(v[:5], [9172, 9350, 9483, 9558, 9775])
    assert "MASS" in ds.description and "26960" in ds.description


def test_galaxies_corrected_version():
    fixed = galaxies(corrected=True).data.astype(np.float64)
    original = galaxies().data.astype(np.float64)
    changed = np.flatnonzero(fixed != original)
    np.testing.assert_array_equal(changed, [77])
    assert fixed[77] == 26960.0
    assert fixed.mean() == pytest.approx(20831.46, abs=0.005)
