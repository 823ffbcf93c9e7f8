"""Where NUTS starts: candidate seedings over fewer components, descended, the lowest kept."""

import jax
import numpy as np
import pytest

from dpgmm_ppl.datasets import seed_mixture
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.infer import _nuts_starts
from dpgmm_ppl.infer._nuts_starts import CANDIDATES_PER_CHAIN, active_components
from dpgmm_ppl.initialization import kmeanspp_init
from dpgmm_ppl.priors import Priors


def test_active_components_halve_down_to_one():
    assert active_components(25, 1).tolist() == [25, 13, 7, 4][:CANDIDATES_PER_CHAIN]
    assert active_components(2, 3).tolist() == [2, 1, 1, 1] * 3
    assert active_components(1, 1).tolist() == [1] * CANDIDATES_PER_CHAIN


@pytest.mark.parametrize("num_active", [1, 2, 3])
def test_only_the_active_components_take_points(rng, num_active):
    """Two clusters of 100 points at -5 and 5 (sd 0.1), 6 components. The
    active ones share the 200 points (weight (count + 1) / (N + K)); the
    others hold none: weight 1 / (N + K) and the prior's mode of a scale.
    With two active, k-means++ puts one centre in each cluster (the second
    centre is drawn from the other cluster with probability 1 - 2e-4)."""
    data = np.concatenate([rng.normal(-5.0, 0.1, 100), rng.normal(5.0, 0.1, 100)])
    priors = Priors().resolve(data)
    num_components = 6
    seeded = kmeanspp_init(jax.random.PRNGKey(3), data, num_components, priors,
                           num_active=num_active)
    weights = np.asarray(seeded["weights"])
    empty = 1.0 / (data.size + num_components)
    np.testing.assert_allclose(weights[num_active:], empty, rtol=1e-6)
    np.testing.assert_allclose(weights[:num_active].sum(), (data.size + num_active) * empty,
                               rtol=1e-5)
    assert np.all(weights[:num_active] > 1.5 * empty)
    prior_mode = float(np.asarray(priors.scale_rate)) / (priors.scale_shape + 1.0)
    np.testing.assert_allclose(np.asarray(seeded["scale"])[num_active:], prior_mode, rtol=1e-5)
    if num_active == 2:
        np.testing.assert_allclose(np.sort(np.asarray(seeded["loc"])[:2]), [-5.0, 5.0], atol=0.4)
        np.testing.assert_allclose(weights[:2], 101 * empty, rtol=1e-5)
    # None and num_active = K are the same seeding.
    every = kmeanspp_init(jax.random.PRNGKey(3), data, num_components, priors)
    also = kmeanspp_init(jax.random.PRNGKey(3), data, num_components, priors,
                         num_active=num_components)
    for name in every:
        np.testing.assert_array_equal(np.asarray(every[name]), np.asarray(also[name]))


@pytest.mark.slow
@pytest.mark.xla_optimized
def test_descended_starts_are_lower_and_less_split_than_those_seeded_everywhere(monkeypatch):
    """Every 10th seed point (1,900; the largest true weight 0.526), 25
    components, two chains, keys 0-2, 1,000 descent steps. Measured: seeded
    over every component, the kept starts split the clusters (largest weight
    0.17-0.28) at potentials 5,503.9-5,508.1; with the ladder of seeded
    components, 0.32-0.54 at 5,501.2-5,502.1, and the lowest start of all
    holds the largest cluster in one component (0.54 against 0.526). The
    potential is the negative log density, so lower is better."""
    data = seed_mixture().data[::10]
    density = build_log_density(data, num_components=25, parameterization="noncentered")

    def starts():
        largest, potentials = [], []
        for key in range(3):
            positions = _nuts_starts.init_positions(jax.random.PRNGKey(key), density, 2, 1000)
            values = _nuts_starts.sorted_values(density, positions)
            largest.append(np.exp(np.asarray(values["log_weights"]))[:, 0])
            potentials.append(
                np.asarray(jax.vmap(density.potential_fn, (0, None))(positions, density.data))
            )
        return np.array(largest), np.array(potentials)

    largest, potentials = starts()
    monkeypatch.setattr(_nuts_starts, "active_components",
                        lambda num_components, num_chains: np.array(
                            [num_components] * (CANDIDATES_PER_CHAIN * num_chains), np.int32))
    largest_everywhere, potentials_everywhere = starts()
    print(largest, potentials, largest_everywhere, potentials_everywhere)
    assert np.all(potentials.max(axis=1) < potentials_everywhere.min(axis=1))
    assert largest.mean() > largest_everywhere.mean() + 0.1
    assert abs(largest.flat[np.argmin(potentials)] - 0.526) < 0.03
