"""Label switching, and a point estimate held against a posterior, in figures.

Each function draws what :mod:`dpgmm_ppl.labels` computes: the traces that
show labels permuting between chains, the weights after relabelling, the
co-clustering matrix and the posterior of the number of clusters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from dpgmm_ppl import labels
from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.plots._common import check_fit, dimension_names

if TYPE_CHECKING:
    from collections.abc import Sequence

    import jax
    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

    from dpgmm_ppl.labels import Coclustering
    from dpgmm_ppl.result import Fit

__all__ = [
    "plot_coclustering",
    "plot_label_switching",
    "plot_num_clusters",
    "plot_weights_against_posterior",
]

#: Label-invariant traces :func:`plot_label_switching` can draw.
INVARIANTS = ("lp", "alpha")
#: Columns :func:`plot_label_switching` draws side by side when not told which.
MAX_TRACE_DIMS = 4


def _leading_components(fit, num_leading):
    """Components by decreasing mean weight over every draw of every chain."""
    mean_weights = np.asarray(fit.samples["weights"]).mean(axis=(0, 1))
    return np.argsort(-mean_weights, kind="stable")[:num_leading]


def _invariant_trace(fit, invariant):
    if invariant not in INVARIANTS:
        raise ValueError(f"invariant must be one of {INVARIANTS}, got {invariant!r}")
    if invariant == "alpha":
        return np.asarray(fit.samples["alpha"])
    return np.asarray(fit.sample_stats["lp"])


def _trace_columns(fit, dim, names):
    """The columns of ``loc`` to trace, as indices: ``dim`` by index or name, else the first few."""
    width = 1 if fit.dim is None else fit.dim
    if dim is None:
        return list(range(min(width, MAX_TRACE_DIMS)))
    chosen = [dim] if isinstance(dim, (int, np.integer, str)) else list(dim)
    indices = []
    for each in chosen:
        if isinstance(each, str) and each in names:
            indices.append(names.index(each))
        elif isinstance(each, (int, np.integer)) and not isinstance(each, bool) and 0 <= each < width:
            indices.append(int(each))
        else:
            raise ValueError(
                f"dim must be in [0, {width}) or a column name in {list(names)}, got {dim!r}"
            )
    if not indices or len(set(indices)) != len(indices):
        raise ValueError(f"dim must name different columns, got {dim!r}")
    return indices


def _trace_axes(axes, num_rows, num_columns):
    """The given or new axes as a ``(num_rows, num_columns)`` array; the last row is one panel."""
    if axes is None:
        if num_columns == 1:
            axes = plt.subplots(num_rows, 1, sharex=True, figsize=(8, 1.6 * num_rows),
                                layout="constrained")[1]
        else:
            layout = [[f"{row} {column}" for column in range(num_columns)]
                      for row in range(num_rows - 1)] + [["invariant"] * num_columns]
            fig = plt.figure(figsize=(3.2 * num_columns + 1.0, 1.6 * num_rows), layout="constrained")
            panels = fig.subplot_mosaic(layout, sharex=True)
            axes = [[panels[name] for name in row] for row in layout]
    axes = np.asarray(axes, dtype=object)
    if axes.size != num_rows * num_columns:
        expected = f"num_leading + 1 = {num_rows}" if num_columns == 1 else (
            f"(num_leading + 1) x columns = {num_rows} x {num_columns}")
        raise ValueError(f"axes must hold {expected} Axes, got {axes.size}")
    axes = axes.reshape(num_rows, num_columns)
    for extra in {id(ax): ax for ax in axes[-1, 1:] if ax is not axes[-1, 0]}.values():
        extra.set_axis_off()  # the invariant trace takes the last row's first panel
    return axes


def plot_label_switching(
    fit: Fit,
    *,
    num_leading: int = 4,
    invariant: str = "lp",
    dim: int | str | Sequence[int | str] | None = None,
    names: Sequence[str] | None = None,
    axes: np.ndarray | Sequence[Axes] | None = None,
) -> np.ndarray:
    """Traces of the leading components' locations, coloured by chain, over an invariant trace.

    One row of panels per leading component (by mean weight over all
    draws), one column per column of the data drawn, each panel that
    component's ``loc`` in that column against the draw index, a line per
    chain; the columns are titled with their names. When the labels switch
    between chains, a panel holds lines at different levels, while the last
    row, a label-invariant quantity (``lp`` or ``alpha``), shows the chains
    agreeing. Relabel the fit (:func:`dpgmm_ppl.labels.relabel`) and draw it
    again to see the levels line up.

    Parameters
    ----------
    fit : Fit
        Several draws per chain (NUTS, SVI); MAP restarts have one draw each
        and draw as points.
    num_leading : int
        Components shown, at most ``fit.num_components``.
    invariant : {"lp", "alpha"}
        The label-invariant trace of the last row.
    dim : int, str or sequence of them, optional
        The columns of ``loc`` drawn for vector data, by index or name;
        default all of them up to four (the first four beyond).
    names : sequence of str, optional
        One name per column of the data; default ``fit.names``, else
        ``x[0]``, ``x[1]``, ....
    axes : array of matplotlib Axes, optional
        ``num_leading + 1`` axes for one column; ``(num_leading + 1, n)`` for
        ``n`` columns (the invariant goes in ``axes[-1, 0]``). A new figure
        when omitted.

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        For one column, ``axes[i].lines[c]`` is chain ``c``'s trace of the
        ``i``-th leading component and ``axes[-1].lines[c]`` its invariant
        trace. For several, ``axes[i, j]`` is the ``i``-th leading component
        in the ``j``-th column drawn, and every cell of the last row is the
        one panel of the invariant.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> rng = np.random.default_rng(0)
    >>> samples = {"alpha": np.ones((2, 10)), "weights": np.full((2, 10, 2), 0.5),
    ...            "loc": rng.normal(size=(2, 10, 2, 3)), "scale": np.ones((2, 10, 2, 3))}
    >>> fit = Fit("nuts", samples, {"lp": rng.normal(size=(2, 10))}, rng.normal(size=(20, 3)),
    ...           2, Priors(), names=("a", "b", "c"))
    >>> axes = plot_label_switching(fit, num_leading=2)
    >>> axes.shape, [ax.get_title() for ax in axes[0]]
    ((3, 3), ['a', 'b', 'c'])
    """
    check_fit(fit)
    num_leading = min(check_positive_int("num_leading", num_leading), fit.num_components)
    trace = _invariant_trace(fit, invariant)
    labels_ = dimension_names(fit, names)
    columns = _trace_columns(fit, dim, labels_)
    loc = np.asarray(fit.samples["loc"])
    loc = loc[..., None] if fit.dim is None else loc
    leading = _leading_components(fit, num_leading)
    grid = _trace_axes(axes, num_leading + 1, len(columns))
    marker = "o" if fit.num_draws == 1 else None
    draws = np.arange(fit.num_draws)
    for j, column in enumerate(columns):
        for ax, component in zip(grid[:-1, j], leading):
            for chain in range(fit.num_chains):
                ax.plot(draws, loc[chain, :, component, column], lw=0.7, marker=marker,
                        color=f"C{chain % 10}", label=f"chain {chain}")
            ax.set_ylabel(f"loc[{component}]" if j == 0 else "")
        grid[0, j].set_title(labels_[column])
        if len(columns) > 1:  # the columns are narrower than the invariant's panel: own ticks
            grid[-2, j].tick_params(labelbottom=True)
    invariant_ax = grid[-1, 0]
    for chain in range(fit.num_chains):
        invariant_ax.plot(draws, trace[chain], lw=0.7, marker=marker, color=f"C{chain % 10}",
                          label=f"chain {chain}")
    invariant_ax.set_ylabel(invariant)
    invariant_ax.set_xlabel("draw")
    if axes is None:  # a caller's own figure keeps its title
        width = 1 if fit.dim is None else fit.dim
        shown = "" if len(columns) == width or dim is not None else (
            f" ({len(columns)} of {width} columns)")
        grid[0, 0].figure.suptitle(
            f"leading components by chain{shown}; the last row is label-invariant",
            fontsize="medium",
        )
    if fit.num_chains <= 10:
        grid[0, -1].legend(fontsize="small", ncol=min(fit.num_chains, 5))
    return grid[:, 0] if len(columns) == 1 else grid


def plot_weights_against_posterior(
    map_fit: Fit, posterior_fit: Fit, *, num_shown: int | None = None, ax: Axes | None = None
) -> Axes:
    """Sorted MAP weights beside box plots of the relabelled posterior weights.

    The posterior fit is relabelled with ``"pivot"`` first unless it already
    was (``posterior_fit.permutations`` set). Its components are shown in
    order of decreasing posterior mean weight, one box per component; the
    MAP weights of the best restart, sorted, are the markers of
    ``ax.lines[-1]``.

    Parameters
    ----------
    map_fit : Fit
        A fit of ``"map"``, or of another backend of kind ``"optimum"``.
    posterior_fit : Fit
        A fit with several draws (SVI, NUTS).
    num_shown : int, optional
        Components shown; by default those whose posterior mean weight or MAP
        weight exceeds 0.5%.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_fit(map_fit)
    check_fit(posterior_fit)
    if not map_fit.is_point_estimate:
        raise ValueError(
            f"map_fit must be a 'map' fit or another optimum, got backend "
            f"{map_fit.backend!r} of kind {map_fit.kind!r}"
        )
    if posterior_fit.num_draws < 2:
        raise ValueError(
            "posterior_fit must have several draws per chain (SVI or NUTS), "
            f"got {posterior_fit.num_draws} from backend {posterior_fit.backend!r}"
        )
    if posterior_fit.permutations is None:
        posterior_fit = labels.relabel(posterior_fit, method="pivot")
    weights = np.asarray(posterior_fit.samples["weights"]).reshape(-1, posterior_fit.num_components)
    order = np.argsort(-weights.mean(axis=0), kind="stable")
    map_weights = -np.sort(-np.asarray(map_fit.samples["weights"][map_fit.best_chain, 0]))
    if num_shown is None:
        num_shown = max(
            int(np.sum(weights.mean(axis=0) > 0.005)), int(np.sum(map_weights > 0.005)), 1
        )
    num_shown = min(check_positive_int("num_shown", num_shown), weights.shape[1], map_weights.size)
    ax = plt.subplots(figsize=(8, 4))[1] if ax is None else ax
    positions = np.arange(1, num_shown + 1)
    ax.boxplot(weights[:, order[:num_shown]], positions=positions, widths=0.5, showfliers=False)
    ax.plot(positions, map_weights[:num_shown], "D", color="C3", label="MAP (sorted)")
    ax.set_xlabel("component, by decreasing posterior mean weight")
    ax.set_ylabel("weight")
    ax.set_title(f"{posterior_fit.backend} posterior (relabelled) against MAP")
    ax.legend()
    return ax


def plot_coclustering(
    fit: Fit | Coclustering,
    x: ArrayLike | None = None,
    *,
    partition: ArrayLike | None = None,
    max_points: int = 500,
    rng_key: jax.Array | int = 0,
    names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Heat map of the co-clustering matrix, points ordered so that clusters are blocks.

    ``fit`` is a Fit or the :class:`~dpgmm_ppl.labels.Coclustering` that
    :func:`~dpgmm_ppl.labels.coclustering_matrix` returned. From a Fit, the
    matrix of at most ``max_points`` points of ``x`` (default the training
    data) is computed, and the points are sorted by their cluster in
    ``partition`` (by default :func:`~dpgmm_ppl.labels.point_partition`
    with the VI loss) and, within a cluster, by their first column. A
    Coclustering is drawn as it is: sorted by ``partition`` if given (one
    label per row of the matrix, or per point of the data it was computed
    from), else in the order of an average-linkage clustering of the matrix
    (clusters counted where it cuts at probability 0.5). Blocks on the
    diagonal are the clusters, off-diagonal shading the uncertainty
    between them.

    Parameters
    ----------
    fit : Fit or Coclustering
    x : array, optional
        Points; ``fit.data`` by default. With a Coclustering, the points it
        was computed from (only to order a cluster's points by value).
    partition : array of int, optional
        Cluster labels of every point of ``x``.
    max_points : int
        Size of the subsample drawn in the matrix (from a Fit).
    rng_key : int
        Seeds the subsample.
    names : sequence of str, optional
        The data's column names; the first orders the points within a
        cluster and is named on the x axis. Default ``fit.names``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.images[0]`` holds the ordered matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import labels
    >>> matrix = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.0], [0.1, 0.0, 1.0]])
    >>> ax = plot_coclustering(labels.Coclustering(matrix, np.arange(3)))
    >>> ax.get_title()
    'co-clustering of 3 points, 2 clusters (average linkage cut at 0.5)'
    """
    if isinstance(fit, labels.Coclustering):
        return _plot_given_coclustering(fit, x, partition, ax)
    check_fit(fit)
    max_points = check_positive_int("max_points", max_points)
    points = np.asarray(fit.data if x is None else x)
    label = dimension_names(fit, names)[0]
    similarity = labels.coclustering_matrix(fit, points, max_points=max_points, rng_key=rng_key)
    if partition is None:
        partition = labels.point_partition(fit, points, rng_key=rng_key).labels
    partition = np.asarray(partition)
    if partition.shape != (points.shape[0],):
        raise ValueError(
            f"partition must hold one label per point, shape ({points.shape[0]},), "
            f"got shape {partition.shape}"
        )
    subset = similarity.indices
    values = points[subset] if points.ndim == 1 else points[subset, 0]
    order = np.lexsort((values, partition[subset]))
    title = f"co-clustering, {len(np.unique(partition))} clusters in the point partition"
    return _draw_coclustering(similarity.matrix, order, title,
                              f"point (by cluster, then {label})", ax)


def _plot_given_coclustering(similarity, x, partition, ax):
    matrix = np.asarray(similarity.matrix, np.float64)
    indices = np.asarray(similarity.indices)
    size = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape != (size, size) or indices.shape != (size,):
        raise ValueError(
            "fit must be a Fit or a Coclustering with a square matrix and one index per row, "
            f"got a matrix of shape {matrix.shape} and indices of shape {indices.shape}"
        )
    values = np.zeros(size)
    if x is not None:
        points = np.asarray(x)
        values = points[indices] if points.ndim == 1 else points[indices, 0]
    if partition is not None:
        partition = np.asarray(partition)
        if partition.shape != (size,):
            if partition.ndim != 1 or partition.size <= indices.max(initial=-1):
                raise ValueError(
                    f"partition must hold one label per row of the matrix ({size},) or per "
                    f"point of the data it covers, got shape {partition.shape}"
                )
            partition = partition[indices]
        order = np.lexsort((values, partition))
        title = f"co-clustering of {size} points, {len(np.unique(partition))} clusters in the partition"
        return _draw_coclustering(matrix, order, title, "point (by cluster)", ax)
    order, num_clusters = _linkage_order(matrix)
    title = f"co-clustering of {size} points, {num_clusters} clusters (average linkage cut at 0.5)"
    return _draw_coclustering(matrix, order, title, "point (by average linkage)", ax)


def _linkage_order(matrix):
    """Leaf order of an average-linkage clustering on ``1 - matrix``, and its clusters at 0.5."""
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
    from scipy.spatial.distance import squareform

    if matrix.shape[0] < 2:
        return np.arange(matrix.shape[0]), matrix.shape[0]
    distance = np.clip(1.0 - (matrix + matrix.T) / 2.0, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    clusters = fcluster(tree, t=0.5, criterion="distance")
    return leaves_list(tree), len(np.unique(clusters))


def _draw_coclustering(matrix, order, title, xlabel, ax):
    ax = plt.subplots(figsize=(5, 5))[1] if ax is None else ax
    image = ax.imshow(matrix[np.ix_(order, order)], vmin=0.0, vmax=1.0,
                      cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="P(same component)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("point")
    ax.set_title(title)
    return ax


def plot_num_clusters(
    fit: Fit,
    x: ArrayLike | None = None,
    *,
    threshold: float = 0.01,
    rng_key: jax.Array | int = 0,
    ax: Axes | None = None,
) -> Axes:
    """Bar chart of the posterior of the number of clusters, two ways.

    Side by side, from :func:`~dpgmm_ppl.labels.num_clusters_posterior`: the
    number of occupied clusters (components holding at least one point of
    ``x`` in drawn allocations) and the number of components whose weight
    exceeds ``threshold``. ``ax.containers[0]`` and ``[1]`` are the two bar
    sets, heights the probabilities of 1 .. K.

    Parameters
    ----------
    fit : Fit
    x : array, optional
    threshold : float
    rng_key : int
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_fit(fit)
    posterior = labels.num_clusters_posterior(fit, x, threshold=threshold, rng_key=rng_key)
    values = np.asarray(posterior.values)
    keep = (posterior.occupied_probabilities > 0) | (posterior.above_threshold_probabilities > 0)
    shown = np.arange(values[keep].min(), values[keep].max() + 1)
    ax = plt.subplots(figsize=(6, 4))[1] if ax is None else ax
    width = 0.4
    ax.bar(shown - width / 2, posterior.occupied_probabilities[shown], width, label="occupied")
    ax.bar(shown + width / 2, posterior.above_threshold_probabilities[shown], width,
           label=f"weight > {threshold:g}")
    ax.set_xticks(shown)
    ax.set_xlabel("number of clusters")
    ax.set_ylabel("posterior probability" if fit.num_draws > 1 else "fraction of restarts")
    ax.legend()
    return ax
