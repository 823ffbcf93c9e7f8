"""Every result type prints a short summary, its arrays one attribute away (issue 22).

``repr`` used to be the NamedTuple's or dataclass's own, every array printed
in full (about 40 lines for a Partition). Each test below builds the object
from a hand-made fit and reads what ``repr`` and ``_repr_html_`` say.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_labels import make_fit, well_separated

from dpgmm_ppl import labels
from dpgmm_ppl.compare import Comparison

#: Enough lines for a summary; the dumps this replaces ran to dozens.
MAX_LINES = 12


@pytest.fixture(scope="module")
def switched():
    """Four NUTS-like chains of 40 draws in different labellings, 120 points."""
    fit, true_labels = well_separated(np.random.default_rng(5), num_draws=40, num_points=120)
    return fit, true_labels


def assert_short(text):
    lines = text.splitlines()
    assert len(lines) <= MAX_LINES, text
    assert "array(" not in text and "..." not in lines[0], text
    return lines


def test_fit_repr_is_a_short_summary_with_the_column_names(switched):
    fit, _ = switched
    samples = {**fit.samples, "loc": np.stack([fit.samples["loc"], -fit.samples["loc"]], -1),
               "scale": np.stack([fit.samples["scale"]] * 2, -1)}
    named = dataclasses.replace(fit, samples=samples, data=np.stack([fit.data, -fit.data], 1),
                                names=("height", "weight"))
    lines = assert_short(repr(named))
    assert lines[0] == "Fit(backend='nuts', covariance='diag')"
    text = "\n".join(lines)
    assert "4 x 40; best chain" in text
    assert "120 points x 2 columns: height, weight" in text
    assert "3 (truncation), 3.0 above 1% weight on average" in text
    assert "alpha, weights, loc, scale" in text
    html = named._repr_html_()
    assert html.startswith("<table>") and html.count("<tr>") == len(lines) - 1
    assert "<td>data</td><td>120 points x 2 columns: height, weight</td>" in html


def test_partition_repr_gives_the_cluster_sizes(switched):
    fit, _ = switched
    partition = labels.point_partition(fit, max_points=60)
    lines = assert_short(repr(partition))
    sizes = np.bincount(partition.labels)
    assert lines[0] == f"Partition(loss='vi', expected_loss={partition.expected_loss:.4g})"
    assert lines[1].split() == ["clusters", "3,", "of", "sizes",
                                *[f"{size}," for size in sizes[:-1]], str(sizes[-1])]
    assert lines[3].split()[1:] == ["60", "points", "searched,", "the", "others", "placed", "after"]


def test_num_clusters_posterior_repr_and_html_are_the_table_of_probabilities(switched):
    fit, _ = switched
    posterior = labels.num_clusters_posterior(fit, threshold=0.05)
    lines = assert_short(repr(posterior))
    assert lines[0] == "NumClustersPosterior(threshold=0.05, 4 chains x 40 draws)"
    assert lines[1].split() == ["clusters", "P(occupied)", "P(weight", ">", "0.05)"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:-1]}
    for count, (occupied, above) in rows.items():
        if count != "mean":
            assert float(occupied) == pytest.approx(posterior.occupied_probabilities[int(count)], abs=5e-4)
            assert float(above) == pytest.approx(
                posterior.above_threshold_probabilities[int(count)], abs=5e-4)
    assert rows["3"][1] == "1.000"
    html = posterior._repr_html_()
    assert "<th>P(weight &gt; 0.05)</th>" in html and "<td>3</td><td>" in html


def test_coclustering_repr(switched):
    fit, _ = switched
    similarity = labels.coclustering_matrix(fit, max_points=50, rng_key=1)
    lines = assert_short(repr(similarity))
    assert lines[0] == "Coclustering(50 points)"
    off = similarity.matrix[~np.eye(50, dtype=bool)]
    assert f"off the diagonal mean {off.mean():.3f}" in lines[1]
    assert lines[2].split()[:2] == ["indices", "50"]


def test_label_switching_report_repr_and_html(switched):
    fit, _ = switched
    report = labels.label_switching_report(fit)
    lines = assert_short(repr(report))
    assert lines[0] == "LabelSwitchingReport(is_switching=True, threshold=1.1)"
    assert lines[1].split()[:3] == ["worst", "component", "R-hat"]
    permutations = report.chain_permutations
    moved = int(np.sum(np.any(permutations != np.arange(3), axis=1)))
    assert moved >= 2 and lines[3].split()[2:] == [str(moved), "of", "4", "differ", "from", "chain", "0"]
    assert str(report) == report.to_string()  # the full table is one print away
    html = report._repr_html_()
    assert html.count("<tr>") == 1 + len(report.invariant_rhat) + len(report.component_rhat)
    assert "label switching detected" in html


def test_comparison_repr_is_its_table_and_html_a_table():
    fits = {"map": None, "nuts": None}
    columns = {"backend": ["map", "nuts"], "compile_seconds": [1.5, 2.25],
               "run_seconds": [0.5, 10.0], "divergences": [None, 3]}
    table = Comparison(columns, fits)
    lines = repr(table).splitlines()
    assert lines[0] == "Comparison of map, nuts (the fits in .fits)"
    assert lines[1:] == table.to_string().splitlines()
    assert lines[3].split() == ["nuts", "2.25", "10", "3"]
    html = table._repr_html_()
    assert "<th>compile_seconds</th>" in html and "<td>-</td>" in html


def test_a_hand_made_fit_without_lp_still_prints():
    fit = make_fit({"alpha": np.ones((1, 1)), "weights": np.ones((1, 1, 1)),
                    "loc": np.zeros((1, 1, 1)), "scale": np.ones((1, 1, 1))},
                   np.zeros((1, 1)), np.zeros(3))
    fit = dataclasses.replace(fit, sample_stats={})
    assert repr(fit).splitlines()[1].split() == ["chains", "x", "draws", "1", "x", "1"]
