"""Figures of label switching and of MAP against a posterior: the numbers drawn."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_labels import make_fit, well_separated

from dpgmm_ppl import labels
from dpgmm_ppl.plots import (
    plot_coclustering,
    plot_label_switching,
    plot_num_clusters,
    plot_weights_against_posterior,
)


@pytest.fixture(scope="module")
def switched():
    return well_separated(np.random.default_rng(5), num_draws=60, num_points=120)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def map_fit_of(fit, weights):
    """A two-restart MAP fit whose restarts are the first draw of chains 0 and 1."""
    samples = {name: np.asarray(value)[:2, :1] for name, value in fit.samples.items()}
    samples["weights"] = np.broadcast_to(np.asarray(weights, np.float32), (2, 1, len(weights))).copy()
    lp = np.array([[1.0], [0.0]], np.float32)
    return make_fit(samples, lp, fit.data, backend="map")


def test_switching_traces_are_the_loc_of_the_leading_components(switched):
    fit, _ = switched
    axes = plot_label_switching(fit, num_leading=3)
    leading = np.argsort(-fit.samples["weights"].mean(axis=(0, 1)), kind="stable")
    for panel, component in zip(axes[:-1], leading):
        for chain, line in enumerate(panel.lines):
            np.testing.assert_array_equal(line.get_ydata(), fit.samples["loc"][chain, :, component])
    for chain, line in enumerate(axes[-1].lines):
        np.testing.assert_array_equal(line.get_ydata(), fit.sample_stats["lp"][chain])
    # Switched chains: the first panel's chains sit at different true locations.
    levels = [np.mean(line.get_ydata()) for line in axes[0].lines]
    assert np.ptp(levels) > 4.0
    # After relabelling the same panel's chains agree.
    relabelled = labels.relabel(fit, method="pivot")
    axes = plot_label_switching(relabelled, num_leading=3)
    levels = [np.mean(line.get_ydata()) for line in axes[0].lines]
    assert np.ptp(levels) < 0.1


def test_switching_figure_checks_its_arguments(switched):
    fit, _ = switched
    with pytest.raises(ValueError, match="invariant must be one of"):
        plot_label_switching(fit, invariant="weights")
    with pytest.raises(ValueError, match="axes must hold num_leading"):
        plot_label_switching(fit, num_leading=2, axes=plt.subplots(2)[1])


def test_weights_against_posterior_draws_map_and_relabelled_medians(switched):
    fit, _ = switched
    map_weights = [0.1, 0.5, 0.4]
    ax = plot_weights_against_posterior(map_fit_of(fit, map_weights), fit)
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), sorted(map_weights, reverse=True))
    relabelled = labels.relabel(fit, method="pivot")
    weights = relabelled.samples["weights"].reshape(-1, 3)
    medians = np.sort(np.median(weights, axis=0))[::-1]
    flat = [tuple(np.round(line.get_ydata(), 6)) for line in ax.lines]
    for median in medians:  # one horizontal median line per box
        assert (round(float(median), 6),) * 2 in flat
    # Raw (switched) weights would give three boxes near 1/3 each; the relabelled ones
    # keep the true weights 0.4, 0.3, 0.3 apart.
    assert medians[0] > 0.37


def test_weights_against_posterior_refuses_swapped_arguments(switched):
    fit, _ = switched
    with pytest.raises(ValueError, match="map_fit must be a 'map' fit"):
        plot_weights_against_posterior(fit, fit)


def test_coclustering_heat_map_is_block_diagonal_in_partition_order(switched):
    fit, true_labels = switched
    ax = plot_coclustering(fit, partition=true_labels, max_points=60)
    drawn = np.asarray(ax.images[0].get_array())
    expected = labels.coclustering_matrix(fit, fit.data, max_points=60, rng_key=0)
    subset = expected.indices
    order = np.lexsort((fit.data[subset], true_labels[subset]))
    np.testing.assert_allclose(drawn, expected.matrix[np.ix_(order, order)])
    ordered = true_labels[subset][order]
    same = ordered[:, None] == ordered[None, :]
    assert drawn[same].mean() > 0.9 and drawn[~same].mean() < 0.1


def test_num_clusters_bars_are_the_two_posteriors(switched):
    fit, _ = switched
    ax = plot_num_clusters(fit, threshold=0.05)
    posterior = labels.num_clusters_posterior(fit, threshold=0.05, rng_key=0)
    occupied, above = ax.containers[0], ax.containers[1]
    shown = np.round([bar.get_x() + bar.get_width() for bar in occupied]).astype(int)
    np.testing.assert_allclose([bar.get_height() for bar in occupied],
                               posterior.occupied_probabilities[shown])
    np.testing.assert_allclose([bar.get_height() for bar in above],
                               posterior.above_threshold_probabilities[shown])
    # Three well-separated components, all above 5%: three clusters both ways.
    assert posterior.above_threshold_probabilities[3] == 1.0
    assert posterior.occupied_probabilities[3] > 0.99
