"""Relabelling and the point partition on the notebook's seed data (slow)."""

import numpy as np
import pytest

from dpgmm_ppl import labels

pytestmark = pytest.mark.slow


def test_pivot_relabelled_map_restarts_agree_on_every_heavy_component(seed_map_fit):
    """8 restarts, 50 components: after pivoting, each component above 5% sits in one place."""
    truth, fit = seed_map_fit
    relabelled = labels.relabel(fit, method="pivot")
    weights = relabelled.samples["weights"][:, 0]  # (restart, component)
    loc = relabelled.samples["loc"][:, 0]
    heavy = np.flatnonzero(weights.mean(axis=0) > 0.05)
    print("heavy components:", heavy, "locs:\n", np.round(loc[:, heavy], 3))
    assert len(heavy) == 4
    spread = np.max(loc[:, heavy], axis=0) - np.min(loc[:, heavy], axis=0)
    assert np.all(spread < 0.2), spread
    np.testing.assert_allclose(np.sort(loc[0, heavy]), np.sort(truth.loc), atol=0.3)
    # Before relabelling the same components sit under different labels.
    raw_heavy = np.argsort(-fit.samples["weights"][:, 0], axis=1)[:, :4]
    assert len({tuple(sorted(row)) for row in raw_heavy.tolist()}) > 1


def test_point_partition_of_the_nuts_posterior_finds_three_or_four_clusters(seed_nuts_fit):
    truth, fit, _ = seed_nuts_fit
    for loss in labels.LOSSES:
        partition = labels.point_partition(fit, loss=loss, rng_key=0)
        num_clusters = int(partition.labels.max()) + 1
        print(loss, "clusters:", num_clusters, "sizes:", np.bincount(partition.labels))
        assert num_clusters in (3, 4), (loss, num_clusters)
