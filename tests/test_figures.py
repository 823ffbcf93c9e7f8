"""The figures as a reader checks them: every axis named after its column, every
column drawn, legends that name the heavy components and count the rest (issue 22).

Each figure is drawn for 1-d, 2-d and 4-d data from hand-made fits (known
parameters, no inference), and the tests look at the drawn artists: axis
labels and titles, the number of panels, legend texts, and the numbers of
the curves against an independent computation.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

import dpgmm_ppl
from dpgmm_ppl import labels, plots
from dpgmm_ppl.cli import _figures, main
from dpgmm_ppl.result import Fit

#: Twelve components: eight above 1% weight, five of them at 5% or more.
WEIGHTS = np.array([0.34, 0.25, 0.15, 0.09, 0.06, 0.04, 0.03, 0.02, 0.008, 0.006, 0.004, 0.002])
NAMES = {
    1: ("waiting",),
    2: ("eruptions", "waiting"),
    4: ("sepal length", "sepal width", "petal length", "petal width"),
}
NUM_CHAINS, NUM_DRAWS, NUM_STEPS = 2, 8, 400


def hand_made_fit(dim, *, backend="svi", names=True, seed=0):
    """A fit of known parameters: ``dim`` None for scalar data, else ``(N, dim)`` data."""
    rng = np.random.default_rng(seed)
    event = () if dim is None else (dim,)
    centres = rng.normal(0.0, 4.0, (WEIGHTS.size,) + event)
    data = centres[rng.choice(WEIGHTS.size, 300, p=WEIGHTS)] + rng.normal(size=(300,) + event)
    lead = (NUM_CHAINS, NUM_DRAWS)
    samples = {
        "alpha": rng.gamma(2.0, size=lead),
        "weights": np.broadcast_to(WEIGHTS, lead + WEIGHTS.shape).copy(),
        "loc": centres + 0.05 * rng.normal(size=lead + centres.shape),
        "scale": rng.uniform(0.8, 1.2, lead + centres.shape),
    }
    losses = None
    if backend != "nuts":
        steps = np.arange(NUM_STEPS)
        losses = 500.0 * np.exp(-steps / 40.0) + 300.0 + rng.normal(0.0, 15.0, (NUM_CHAINS, NUM_STEPS))
    key = 1 if dim is None else dim
    return Fit(backend, {k: v.astype(np.float32) for k, v in samples.items()},
               {"lp": rng.normal(size=lead)}, data.astype(np.float32), WEIGHTS.size,
               dpgmm_ppl.Priors(), losses=losses, names=NAMES[key] if names else None)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def legend_texts(legend):
    return [text.get_text() for text in legend.get_texts()]


#: The legend of every component figure: heavy components named, the rest counted.
COMPONENT_ENTRIES = [f"component {k}: w = {w:.2f}" for k, w in enumerate(WEIGHTS[:5])] + [
    "+ 3 more drawn, weight < 0.05"
]


# --- components: one column, two columns, a pair plot -----------------------------------

def test_one_column_is_a_histogram_named_after_the_column_with_the_marginal_mixture():
    fit = hand_made_fit(None)
    ax = plots.plot_components(fit)
    assert ax.get_xlabel() == "waiting" and ax.get_ylabel() == "density"
    assert legend_texts(ax.get_legend()) == ["data", "mixture"] + COMPONENT_ENTRIES
    grid, mixture = ax.lines[0].get_data()
    samples = {k: v.astype(np.float64) for k, v in fit.samples.items()}
    per_draw = (samples["weights"][..., None] * stats.norm.pdf(
        grid, samples["loc"][..., None], samples["scale"][..., None])).sum(axis=-2)
    np.testing.assert_allclose(mixture, per_draw.mean(axis=(0, 1)), rtol=1e-6)
    assert len(ax.lines) == 1 + 8  # the mixture, then the eight components above 1%


def test_two_columns_are_a_scatter_with_one_ellipse_per_component_and_named_axes():
    fit = hand_made_fit(2)
    ax = plots.plot_components(fit, contours=False)
    assert (ax.get_xlabel(), ax.get_ylabel()) == NAMES[2]
    assert len(ax.patches) == 8
    assert legend_texts(ax.get_legend()) == ["data"] + COMPONENT_ENTRIES
    assert [patch.get_label() for patch in ax.patches][:2] == COMPONENT_ENTRIES[:2]


def test_four_columns_are_a_pair_plot_of_sixteen_named_panels():
    fit = hand_made_fit(4)
    axes = plots.plot_components(fit)
    figure = axes[0, 0].figure
    assert axes.shape == (4, 4) and len(figure.axes) == 16
    names = NAMES[4]
    for i in range(4):
        for j in range(4):
            panel = axes[i, j]
            assert panel.get_xlabel() == names[j], (i, j)
            if i == j:  # a histogram of the column, its marginal mixture and components
                assert len(panel.patches) == 30 and len(panel.lines) == 9
            else:
                assert panel.get_ylabel() == names[i], (i, j)
                assert len(panel.patches) == 8  # the ellipses of the drawn components
    legend = figure.legends[0]
    assert legend_texts(legend) == ["mixture (one column)"] + COMPONENT_ENTRIES
    assert "8 components drawn" in figure.get_suptitle()


def test_pair_plot_panels_hold_the_projected_ellipses_and_the_marginal_predictive_density():
    fit = hand_made_fit(4)
    axes = plots.plot_components(fit, num_std=1.0)
    # Panel [2, 0]: column 0 across, column 2 up.
    _, centres, widths, heights, angles = plots.component_ellipses(
        fit, dims=(0, 2), num_std=1.0)
    drawn = np.argsort(-WEIGHTS)[:8]
    for patch, k in zip(axes[2, 0].patches, drawn):
        np.testing.assert_allclose(patch.center, centres[k], rtol=1e-6)
        np.testing.assert_allclose([patch.width, patch.height], [widths[k], heights[k]], rtol=1e-6)
    # Diagonal [3, 3]: the density of column 3 alone, averaged over every draw.
    grid, mixture = axes[3, 3].lines[0].get_data()
    samples = {k: v.astype(np.float64) for k, v in fit.samples.items()}
    per_draw = (samples["weights"][..., None] * stats.norm.pdf(
        grid, samples["loc"][..., 3, None], samples["scale"][..., 3, None])).sum(axis=-2)
    np.testing.assert_allclose(mixture, per_draw.mean(axis=(0, 1)), rtol=1e-6)


def test_names_argument_and_default_names():
    fit = hand_made_fit(4, names=False)
    axes = plots.plot_components(fit)
    assert [panel.get_xlabel() for panel in axes[-1]] == ["x[0]", "x[1]", "x[2]", "x[3]"]
    axes = plots.plot_components(fit, names=list("abcd"))
    assert [panel.get_ylabel() for panel in axes[1:, 0]] == ["b", "c", "d"]
    assert plots.plot_density(hand_made_fit(None, names=False)).get_xlabel() == "x"
    assert plots.plot_density(hand_made_fit(None)).get_xlabel() == "waiting"
    with pytest.raises(ValueError, match=r"names must hold one name per column of the data \(4\), got 3"):
        plots.plot_components(fit, names=["a", "b", "c"])


def test_dims_choose_the_columns_by_index_or_name():
    fit = hand_made_fit(4)
    ax = plots.plot_components(fit, dims=("petal length", "sepal width"))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("petal length", "sepal width")
    axes = plots.plot_components(fit, dims=[0, 1, 3])
    assert axes.shape == (3, 3)
    assert [panel.get_xlabel() for panel in axes[-1]] == ["sepal length", "sepal width", "petal width"]
    assert plots.plot_components(fit, dims="sepal width").get_xlabel() == "sepal width"
    with pytest.raises(ValueError, match="pair plot of 4 columns needs axes="):
        plots.plot_components(fit, ax=plt.subplots()[1])
    with pytest.raises(ValueError, match="dims must name different columns"):
        plots.plot_components(fit, dims=("sepal length", "colour"))


def test_legend_names_at_most_eight_components_and_counts_the_rest():
    fit = hand_made_fit(2)
    ax = plots.plot_components(fit, component_threshold=0.0, legend_threshold=0.0, contours=False)
    texts = legend_texts(ax.get_legend())
    assert len(ax.patches) == 12
    assert texts[1:9] == [f"component {k}: w = {w:.2f}" for k, w in enumerate(WEIGHTS[:8])]
    assert texts[9:] == ["+ 4 more drawn, weight <= 0.02"]


# --- trace of the leading components ----------------------------------------------------

@pytest.mark.parametrize("dim", [None, 2, 4])
def test_trace_draws_every_column_by_name(dim):
    fit = hand_made_fit(dim, backend="nuts")
    axes = plots.plot_label_switching(fit, num_leading=3)
    names = NAMES[1 if dim is None else dim]
    top = axes[:1] if dim is None else axes[0]
    assert [ax.get_title() for ax in top] == list(names)
    assert axes.shape == ((4,) if dim is None else (4, dim))
    loc = fit.samples["loc"] if dim is None else fit.samples["loc"][..., -1]
    last_column = axes if dim is None else axes[:, -1]
    first_column = axes if dim is None else axes[:, 0]
    for rank in range(3):  # equal weights in every draw: the leading components are 0, 1, 2
        for chain, line in enumerate(last_column[rank].lines):
            np.testing.assert_array_equal(line.get_ydata(), loc[chain, :, rank])
        assert first_column[rank].get_ylabel() == f"loc[{rank}]"
    if dim is not None:  # the invariant is one panel across the last row
        assert all(ax is axes[-1, 0] for ax in axes[-1])
    assert first_column[-1].get_ylabel() == "lp" and len(first_column[-1].lines) == NUM_CHAINS


def test_trace_of_one_named_column_and_of_wide_data():
    fit = hand_made_fit(4, backend="nuts")
    axes = plots.plot_label_switching(fit, num_leading=2, dim="petal width")
    assert axes.shape == (3,) and axes[0].get_title() == "petal width"
    np.testing.assert_array_equal(axes[1].lines[0].get_ydata(), fit.samples["loc"][0, :, 1, 3])
    wide = hand_made_fit(None, backend="nuts")
    loc = np.repeat(wide.samples["loc"][..., None], 6, axis=-1)
    data = np.repeat(wide.data[:, None], 6, axis=1)
    wide = Fit("nuts", {**wide.samples, "loc": loc, "scale": np.ones_like(loc)}, wide.sample_stats,
               data, wide.num_components, wide.priors)
    axes = plots.plot_label_switching(wide, num_leading=2)
    assert axes.shape == (3, 4)
    assert "4 of 6 columns" in axes[0, 0].figure.get_suptitle()


# --- the loss --------------------------------------------------------------------------

def test_svi_loss_is_a_running_mean_of_the_negative_elbo_over_faint_raw_values():
    fit = hand_made_fit(2)
    ax = plots.plot_loss(fit)
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "negative ELBO"
    window = round(0.02 * NUM_STEPS)
    raw, mean = ax.lines[0], ax.lines[1]
    np.testing.assert_allclose(raw.get_ydata(), fit.losses[0])
    expected = np.convolve(fit.losses[0], np.ones(window) / window, mode="valid")
    np.testing.assert_allclose(mean.get_ydata(), expected, rtol=1e-9)
    assert raw.get_alpha() < 0.5
    # The converged level (300) sits well inside the axis, and the first steps' values
    # (above 700) do not flatten the rest: they run off the top.
    low, high = ax.get_ylim()
    assert low < 290 and 310 < high < fit.losses[:, :5].min()


# --- co-clustering from the matrix object -----------------------------------------------

def test_coclustering_figure_takes_the_matrix_object():
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1, 2], 4)
    matrix = np.where(groups[:, None] == groups[None], 0.9, 0.05) + 0.01 * rng.random((12, 12))
    matrix = (matrix + matrix.T) / 2
    shuffled = rng.permutation(12)
    similarity = labels.Coclustering(matrix[np.ix_(shuffled, shuffled)], np.arange(12))
    ax = plots.plot_coclustering(similarity)
    assert ax.get_title() == "co-clustering of 12 points, 3 clusters (average linkage cut at 0.5)"
    # In the drawn order each point's cluster (probability 0.9) is one block of 4 around it.
    drawn = np.asarray(ax.images[0].get_array())
    for row, high in enumerate(drawn > 0.5):
        members = np.flatnonzero(high)
        assert members.size == 4 and np.ptp(members) == 3 and members[0] <= row <= members[-1]
    partition = groups[shuffled]
    ax = plots.plot_coclustering(similarity, partition=partition)
    drawn = np.asarray(ax.images[0].get_array())
    order = np.argsort(partition, kind="stable")
    np.testing.assert_allclose(drawn, similarity.matrix[np.ix_(order, order)])
    assert "3 clusters in the partition" in ax.get_title()


def test_coclustering_figure_of_labels_coclustering_matrix_of_a_fit():
    fit = hand_made_fit(None)
    similarity = labels.coclustering_matrix(fit, max_points=40, rng_key=2)
    ax = plots.plot_coclustering(similarity)
    assert np.asarray(ax.images[0].get_array()).shape == (40, 40)
    with pytest.raises(ValueError, match="partition must hold one label per row"):
        plots.plot_coclustering(similarity, partition=np.zeros(7, int))


# --- the CLI's figures -----------------------------------------------------------------

@pytest.mark.parametrize("dim", [None, 2, 4])
def test_every_cli_figure_names_its_columns(dim):
    backend_fits = {backend: hand_made_fit(dim, backend=backend, names=False)
                    for backend in ("svi", "nuts")}
    names = NAMES[1 if dim is None else dim]
    shape = backend_fits["svi"].data.shape
    drawn = set(_figures.plan_figures("svi", shape)[0] + _figures.plan_figures("nuts", shape)[0])
    drawn.discard("training.gif")
    assert drawn == {"weights.png", "loss.png", "trace.png",
                     "density.png" if dim is None else "components.png"}
    for name in sorted(drawn):
        fit = backend_fits["nuts" if name == "trace.png" else "svi"]
        figure = _figures.draw_figure(name, fit, names=list(names))
        axes = [ax for ax in figure.axes if ax.get_visible() and ax.axison]
        if name in ("density.png", "components.png"):
            shown = {ax.get_xlabel() for ax in axes} | {ax.get_ylabel() for ax in axes}
            assert shown - {"", "density"} == set(names), name
            assert len(axes) == (1 if dim in (None, 2) else 16)
        elif name == "trace.png":
            assert [ax.get_title() for ax in axes if ax.get_title()] == list(names)
        else:  # no column on these axes: no stray x[0]
            assert not any("x[" in ax.get_xlabel() + ax.get_ylabel() for ax in axes)
        plt.close(figure)


def test_cli_on_a_four_column_csv_writes_a_pair_plot_labelled_with_the_header(
        tmp_path, capsys, monkeypatch):
    """The acceptance check of issue 22, with a hand-made NUTS fit in place of the
    inference (fitting is tested elsewhere): ``components.png`` is 16 panels whose
    axes carry the header's names, and ``trace.png`` names every column."""
    header = NAMES[4]
    values = hand_made_fit(4).data
    csv = tmp_path / "iris.csv"
    csv.write_text(",".join(header) + "\n"
                   + "\n".join(",".join(repr(float(v)) for v in row) for row in values) + "\n")

    def fit(data, **kwargs):
        made = hand_made_fit(4, backend="nuts", names=False)
        return Fit("nuts", made.samples, made.sample_stats, np.asarray(data, np.float32),
                   made.num_components, made.priors)

    monkeypatch.setattr(dpgmm_ppl, "fit", fit)
    written = {}
    save = _figures.save_figure

    def keep(figure, path, **options):
        written[path.name] = [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title())
                              for ax in figure.axes if ax.axison]
        return save(figure, path, **options)

    monkeypatch.setattr(_figures, "save_figure", keep)
    out = tmp_path / "out"
    code = main(["fit", str(csv), "--backend", "nuts", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / "summary.json").read_text())["columns"] == list(header)
    panels = written["components.png"]
    assert len(panels) == 16
    for index, (xlabel, ylabel, _) in enumerate(panels):
        row, column = divmod(index, 4)
        assert xlabel == header[column]
        assert ylabel == ("" if row == column else header[row])
    assert [title for _, _, title in written["trace.png"] if title] == list(header)


def test_the_estimator_names_its_fit_after_the_frame_columns(monkeypatch):
    """A scikit-learn user who fits a DataFrame gets figures named after its columns."""
    pytest.importorskip("sklearn")
    pd = pytest.importorskip("pandas")
    from dpgmm_ppl import sklearn as estimator_module

    made = hand_made_fit(2, names=False)
    monkeypatch.setattr(estimator_module, "_fit_dpgmm", lambda X, **options: Fit(
        "svi", made.samples, made.sample_stats, np.asarray(X, np.float32), made.num_components,
        made.priors, losses=made.losses))
    estimator = estimator_module.DirichletProcessGMM()
    estimator.fit(pd.DataFrame(made.data, columns=list(NAMES[2])))
    assert estimator.fit_.names == NAMES[2]
    ax = plots.plot_components(estimator.fit_, contours=False)
    assert (ax.get_xlabel(), ax.get_ylabel()) == NAMES[2]
    assert estimator.fit(made.data).fit_.names is None  # refitted on an array: no names
