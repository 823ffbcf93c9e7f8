"""The data with each component drawn over it: ellipses for pairs of columns, and a pair plot.

One column is a histogram with the marginal mixture density; two are a
scatter with one ellipse per component; three or more are a pair plot of
every pair, with the histograms on the diagonal. Every axis carries the
column's name (:func:`~dpgmm_ppl.plots._common.dimension_names`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from dpgmm_ppl.mixtures import covariance_matrices
from dpgmm_ppl.plots._common import (
    GRID_PAD,
    chain_index,
    check_fit,
    check_threshold,
    component_legend,
    dimension_names,
    marginal_density,
    mean_components,
    weighted_components,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

    from dpgmm_ppl.result import Fit

__all__ = ["component_ellipses", "plot_components"]

#: Points drawn at most in a scatter (an evenly strided subset of larger data).
MAX_SCATTER_POINTS = 5000
#: Grid points per axis of the density contours.
CONTOUR_GRID = 80
#: Columns a pair plot shows when ``dims`` is not given (the first ones).
MAX_PAIR_DIMS = 8
#: Points of the grid of the marginal densities on the diagonal.
MARGINAL_GRID = 200
#: Inches per panel of a pair plot.
PANEL_INCHES = 2.4


def _check_dims(fit, dims):
    if fit.dim is None or fit.dim < 2:
        raise ValueError(
            f"component plots need vector data of shape (N, D) with D >= 2, got shape {fit.data.shape}"
        )
    if (
        not isinstance(dims, tuple)
        or len(dims) != 2
        or not all(isinstance(d, (int, np.integer)) and 0 <= d < fit.dim for d in dims)
        or dims[0] == dims[1]
    ):
        raise ValueError(f"dims must be two different axes in [0, {fit.dim}), got {dims!r}")
    return [int(d) for d in dims]


def _panel_dims(fit, dims, names):
    """The columns to draw, as indices: ``dims`` given by index or name, else all of them."""
    width = 1 if fit.dim is None else fit.dim
    if dims is None:
        return list(range(min(width, MAX_PAIR_DIMS)))
    chosen = [dims] if isinstance(dims, (int, np.integer, str)) else list(dims)
    indices = []
    for dim in chosen:
        if isinstance(dim, str) and dim in names:
            indices.append(names.index(dim))
        elif isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and 0 <= dim < width:
            indices.append(int(dim))
        else:
            raise ValueError(
                f"dims must name different columns of the data, by index in [0, {width}) or by "
                f"name in {list(names)}; got {dims!r}"
            )
    if not indices or len(set(indices)) != len(indices):
        raise ValueError(f"dims must name different columns of the data, got {dims!r}")
    return indices


def component_ellipses(
    fit: Fit, *, chain: int | None = None, dims: tuple[int, int] = (0, 1), num_std: float = 2.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre, axis lengths and angle of each component's ellipse in two dimensions.

    The mean weights, locations and covariance matrices over the draws of one
    chain (``chain``, default the best; for MAP its single draw), projected on
    the axes ``dims`` (the marginal covariance of those two coordinates). That
    mean is only meaningful if the labels do not switch within the chain.

    Parameters
    ----------
    fit : Fit
        A fit to vector data, ``D >= 2``.
    chain : int, optional
    dims : tuple of two ints
        The coordinates to project on.
    num_std : float
        The ellipse passes at this many standard deviations from the centre
        along its axes.

    Returns
    -------
    weights : np.ndarray
        ``(K,)``.
    centres : np.ndarray
        ``(K, 2)``.
    widths, heights : np.ndarray
        ``(K,)``, full axis lengths (``2 * num_std`` standard deviations).
    angles : np.ndarray
        ``(K,)``, in degrees, of the width axis from the first coordinate.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.ones((1, 1, 1)),
    ...            "loc": np.zeros((1, 1, 1, 2)), "scale": np.array([[[[3.0, 1.0]]]])}
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, np.zeros((4, 2)), 1, Priors())
    >>> weights, centres, widths, heights, angles = component_ellipses(fit, num_std=1.0)
    >>> widths.round(6).tolist(), heights.round(6).tolist(), abs(angles.round(6)).tolist()
    ([6.0], [2.0], [0.0])
    """
    check_fit(fit)
    dims = _check_dims(fit, dims)
    if not num_std > 0:
        raise ValueError(f"num_std must be positive, got {num_std!r}")
    index = chain_index(fit, chain)
    samples = {name: np.asarray(value)[index] for name, value in fit.samples.items()}
    covariances = covariance_matrices(samples, fit.covariance).mean(axis=0)[:, dims][:, :, dims]
    weights = samples["weights"].mean(axis=0)
    centres = samples["loc"].mean(axis=0)[:, dims]
    variances, axes = np.linalg.eigh(covariances)  # ascending eigenvalues
    major = axes[:, :, 1]
    angles = np.degrees(np.arctan2(major[:, 1], major[:, 0]))
    lengths = 2.0 * num_std * np.sqrt(np.maximum(variances, 0.0))
    return weights, centres, lengths[:, 1], lengths[:, 0], angles


def plot_components(
    fit: Fit,
    data: ArrayLike | None = None,
    *,
    chain: int | None = None,
    dims: int | str | Sequence[int | str] | None = None,
    names: Sequence[str] | None = None,
    component_threshold: float = 0.01,
    legend_threshold: float = 0.05,
    num_std: float = 2.0,
    contours: bool = True,
    bins: int = 30,
    ax: Axes | None = None,
    axes: np.ndarray | Sequence[Axes] | None = None,
) -> Axes | np.ndarray:
    """The data with each weighted component drawn over it, every axis named after its column.

    The components whose mean weight in one chain (``chain``, default the
    best) exceeds ``component_threshold`` are drawn, heaviest first, each in
    its own colour. How many columns are drawn (``dims``, default all, at
    most the first 8) decides the figure:

    - one: a histogram of the column, the predictive density of that column
      alone (black; over every draw for posterior backends, the best restart
      for MAP) and each component's weighted marginal (dashed);
    - two: a scatter of the points with one ellipse per component
      (``ax.patches``, at ``num_std`` standard deviations, line width growing
      with the weight) and, for 2-d data, contours of the predictive density;
    - three or more: a pair plot, panel ``[i, j]`` the scatter of column
      ``dims[j]`` (x) against ``dims[i]`` (y) with the ellipses projected on
      that pair, the diagonal the histograms.

    Axes are labelled with the columns' names: ``names``, else ``fit.names``
    (a DataFrame's columns, a CSV header), else ``x[0]``, ``x[1]``, ....
    The legend names the components of weight at least ``legend_threshold``
    (eight at most) and ends with an entry counting the drawn ones it leaves
    out.

    Parameters
    ----------
    fit : Fit
    data : array of shape (N,) or (N, D), optional
        Points to draw; default ``fit.data`` (at most 5,000 in a scatter).
    chain : int, optional
    dims : int, str or sequence of them, optional
        The columns to draw, by index or name.
    names : sequence of str, optional
        One name per column of the data.
    component_threshold, legend_threshold : float
        Weights above which a component is drawn, and named in the legend.
    num_std : float
    contours : bool
    bins : int
        Histogram bins of one column.
    ax : matplotlib.axes.Axes, optional
        For one or two columns.
    axes : array of matplotlib Axes, optional
        ``n x n`` axes for a pair plot of ``n`` columns; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes or numpy.ndarray of Axes
        One Axes for one or two columns; the ``(n, n)`` array of a pair plot.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.array([[[0.5, 0.495, 0.005]]]),
    ...            "loc": np.array([[[[-4.0, -4.0], [4.0, 4.0], [0.0, 0.0]]]]),
    ...            "scale": np.ones((1, 1, 3))}  # spherical: one scale per component
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, x, 3, Priors().resolve(x),
    ...           covariance="spherical", names=("height", "weight"))
    >>> ax = plot_components(fit)
    >>> len(ax.patches), ax.get_xlabel(), ax.get_ylabel()  # the components above 1% weight
    (2, 'height', 'weight')
    >>> four = np.concatenate([x, x[::-1]], axis=1)
    >>> samples["loc"] = np.concatenate([samples["loc"], samples["loc"]], axis=-1)
    >>> grid = plot_components(Fit("map", samples, {"lp": np.zeros((1, 1))}, four, 3, Priors(),
    ...                            covariance="spherical", names=("a", "b", "c", "d")))
    >>> grid.shape, [panel.get_xlabel() for panel in grid[-1]]
    ((4, 4), ['a', 'b', 'c', 'd'])
    """
    check_fit(fit, bins=bins)
    component_threshold = check_threshold("component_threshold", component_threshold)
    legend_threshold = check_threshold("legend_threshold", legend_threshold)
    if not num_std > 0:
        raise ValueError(f"num_std must be positive, got {num_std!r}")
    labels = dimension_names(fit, names)
    columns = _panel_dims(fit, dims, labels)
    points = _points(fit, data)
    weights = mean_components(fit, chain)[0]
    drawn = [int(k) for k in np.argsort(-weights, kind="stable") if weights[k] > component_threshold]
    options = dict(chain=chain, drawn=drawn, labels=labels, num_std=num_std)
    if len(columns) > 2:
        if ax is not None:
            raise ValueError(
                f"ax draws one panel, but a pair plot of {len(columns)} columns needs "
                f"axes= ({len(columns)} x {len(columns)}), or dims= with one or two columns"
            )
        grid = _pair_plot(fit, points, columns, axes, bins=bins, **options)
        _title_and_legend(fit, grid.flat[0].figure, drawn, weights, legend_threshold, num_std,
                          len(columns))
        return grid
    ax = plt.subplots()[1] if ax is None else ax
    if len(columns) == 1:
        _marginal_panel(fit, points, columns[0], ax, bins=bins, **options)
        ax.set_ylabel("density")
    else:
        _pair_panel(fit, points, columns, ax, **options)
        if contours and fit.dim == 2:
            _draw_contours(fit, points, ax)
    _title_and_legend(fit, ax, drawn, weights, legend_threshold, num_std, len(columns))
    return ax


def _points(fit, data):
    points = fit.data if data is None else np.asarray(data, np.float64)
    expected = fit.data.shape[1:]
    if points.shape[1:] != expected or points.ndim != fit.data.ndim or not np.all(np.isfinite(points)):
        shape = "(N,)" if fit.dim is None else f"(N, {fit.dim})"
        raise ValueError(f"data must be finite points of shape {shape}, got shape {np.shape(points)}")
    return points if points.ndim == 2 else points[:, None]


def _limits(values):
    low, high = float(np.min(values)), float(np.max(values))
    pad = GRID_PAD * (high - low) if high > low else max(abs(low), 1.0) * GRID_PAD
    return low - pad, high + pad


def _component_label(k, weight):
    return f"component {k}: w = {weight:.2f}"


def _marginal_panel(fit, points, dim, ax, *, bins, chain, drawn, labels, num_std):
    """Histogram of one column, its predictive density and each drawn component's marginal."""
    values = points[:, dim]
    low, high = _limits(values)
    ax.hist(values, bins, range=(low, high), density=True, color="0.8", label="data")
    grid = np.linspace(low, high, MARGINAL_GRID)
    ax.plot(grid, marginal_density(fit, dim, grid, chain), "k", lw=1.5, label="mixture")
    weights, loc, covariances = mean_components(fit, chain)
    curves = weighted_components(weights, loc[:, dim], np.sqrt(covariances[:, dim, dim]), grid)
    for rank, k in enumerate(drawn):
        ax.plot(grid, curves[k], lw=1, ls="--", color=f"C{rank % 10}",
                label=_component_label(k, weights[k]))
    ax.set_xlim(low, high)
    ax.set_xlabel(labels[dim])


def _pair_panel(fit, points, dims, ax, *, chain, drawn, labels, num_std, max_points=MAX_SCATTER_POINTS):
    """Scatter of column ``dims[0]`` (x) against ``dims[1]`` (y), one ellipse per drawn component."""
    from matplotlib.patches import Ellipse

    weights, centres, widths, heights, angles = component_ellipses(
        fit, chain=chain, dims=tuple(dims), num_std=num_std
    )
    shown = points[:: max(1, points.shape[0] // max_points)][:, dims]
    ax.scatter(shown[:, 0], shown[:, 1], s=4, color="0.6", alpha=0.6, label="data")
    for rank, k in enumerate(drawn):
        ax.add_patch(Ellipse(
            centres[k], widths[k], heights[k], angle=angles[k], fill=False,
            color=f"C{rank % 10}", lw=0.8 + 4.0 * weights[k], label=_component_label(k, weights[k]),
        ))
        ax.plot(*centres[k], "+", color=f"C{rank % 10}")
    ax.set_xlim(*_limits(points[:, dims[0]]))
    ax.set_ylim(*_limits(points[:, dims[1]]))
    ax.set_xlabel(labels[dims[0]])
    ax.set_ylabel(labels[dims[1]])


def _pair_plot(fit, points, columns, axes, *, bins, **options):
    size = len(columns)
    if axes is None:
        inches = PANEL_INCHES * size + 1.5
        fig, axes = plt.subplots(size, size, figsize=(inches + 2.0, inches), layout="constrained")
    axes = np.asarray(axes, dtype=object)
    if axes.size != size * size:
        raise ValueError(f"axes must hold {size} x {size} = {size * size} Axes, got {axes.size}")
    axes = axes.reshape(size, size)
    for i, row in enumerate(columns):
        for j, column in enumerate(columns):
            panel = axes[i, j]
            if i == j:
                _marginal_panel(fit, points, column, panel, bins=bins, **options)
                panel.set_yticks([])
            else:
                _pair_panel(fit, points, [column, row], panel, max_points=2000, **options)
            panel.tick_params(labelsize=7)
            panel.xaxis.label.set_fontsize(8)
            panel.yaxis.label.set_fontsize(8)
    return axes


def _title_and_legend(fit, target, drawn, weights, legend_threshold, num_std, num_columns):
    """The fit in the title; a legend that names the heavier drawn components."""
    from matplotlib.lines import Line2D

    width = 1 if fit.dim is None else fit.dim
    shown = "" if num_columns == width or num_columns < 3 else f"; {num_columns} of {width} columns"
    title = (f"{fit.backend}, covariance={fit.covariance!r}: {len(drawn)} components drawn"
             + (f", ellipses at {num_std:g} sd" if num_columns > 1 else "") + shown)
    style = "--" if num_columns == 1 else "-"  # as the components are drawn
    handles = [Line2D([], [], color=f"C{rank % 10}", ls=style, label=_component_label(k, weights[k]))
               for rank, k in enumerate(drawn)]
    if isinstance(target, plt.Axes):
        target.set_title(title, fontsize="medium")
        extra = [(handle, label) for handle, label in zip(*target.get_legend_handles_labels())
                 if label in ("data", "mixture")]
        component_legend(target, handles, weights[drawn], legend_threshold=legend_threshold,
                         extra=extra, loc="best")
    else:
        target.suptitle(title)
        extra = [(Line2D([], [], color="k"), "mixture (one column)")]
        # Beside the panels where the figure's layout makes room for it.
        is_constrained = type(target.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
        component_legend(target, handles, weights[drawn], legend_threshold=legend_threshold,
                         extra=extra, loc="outside right upper" if is_constrained else "upper right")


def _draw_contours(fit, points, ax):
    low, high = points.min(axis=0), points.max(axis=0)
    pad = GRID_PAD * np.where(high > low, high - low, 1.0)
    axes = [np.linspace(lo - p, hi + p, CONTOUR_GRID) for lo, hi, p in zip(low, high, pad)]
    grid_x, grid_y = np.meshgrid(*axes)
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
    density = np.exp(fit.log_predictive_density(grid)).reshape(grid_x.shape)
    ax.contour(grid_x, grid_y, density, levels=8, colors="k", linewidths=0.6, alpha=0.7)
