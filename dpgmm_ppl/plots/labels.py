"""Label switching, and a point estimate held against a posterior, in figures.

Each function draws what :mod:`dpgmm_ppl.labels` computes: the traces that
show labels permuting between chains, the weights after relabelling, the
co-clustering matrix and the posterior of the number of clusters.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dpgmm_ppl import labels
from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.plots._common import check_fit

__all__ = [
    "plot_coclustering",
    "plot_label_switching",
    "plot_num_clusters",
    "plot_weights_against_posterior",
]

#: Label-invariant traces :func:`plot_label_switching` can draw.
INVARIANTS = ("lp", "alpha")


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


def plot_label_switching(fit, *, num_leading=4, invariant="lp", dim=0, axes=None):
    """Traces of the leading components' locations, coloured by chain, over an invariant trace.

    One panel per leading component (by mean weight over all draws): its
    ``loc`` against the draw index, a line per chain. When the labels switch
    between chains, a panel holds lines at different levels, while the last
    panel, a label-invariant quantity (``lp`` or ``alpha``), shows the
    chains agreeing. Relabel the fit (:func:`dpgmm_ppl.labels.relabel`) and
    draw it again to see the levels line up.

    Parameters
    ----------
    fit : Fit
        Several draws per chain (NUTS, SVI); MAP restarts have one draw each
        and draw as points.
    num_leading : int
        Components shown, at most ``fit.num_components``.
    invariant : {"lp", "alpha"}
        The label-invariant trace of the last panel.
    dim : int
        The coordinate of ``loc`` drawn for vector data.
    axes : sequence of matplotlib Axes, optional
        ``num_leading + 1`` axes; a new figure when omitted.

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes
        ``axes[i].lines[c]`` is chain ``c``'s trace of the ``i``-th leading
        component; ``axes[-1].lines[c]`` chain ``c``'s invariant trace.
    """
    check_fit(fit)
    num_leading = min(check_positive_int("num_leading", num_leading), fit.num_components)
    trace = _invariant_trace(fit, invariant)
    loc = np.asarray(fit.samples["loc"])
    if loc.ndim == 4:
        if not 0 <= dim < loc.shape[-1]:
            raise ValueError(f"dim must be in [0, {loc.shape[-1]}), got {dim!r}")
        loc = loc[..., dim]
    leading = _leading_components(fit, num_leading)
    if axes is None:
        fig, axes = plt.subplots(
            num_leading + 1, 1, sharex=True, figsize=(8, 1.6 * (num_leading + 1))
        )
    axes = np.atleast_1d(np.asarray(axes, dtype=object))
    if axes.size != num_leading + 1:
        raise ValueError(f"axes must hold num_leading + 1 = {num_leading + 1} Axes, got {axes.size}")
    marker = "o" if fit.num_draws == 1 else None
    draws = np.arange(fit.num_draws)
    for ax, component in zip(axes[:-1], leading):
        for chain in range(fit.num_chains):
            ax.plot(draws, loc[chain, :, component], lw=0.7, marker=marker, color=f"C{chain % 10}",
                    label=f"chain {chain}")
        ax.set_ylabel(f"loc[{component}]")
    for chain in range(fit.num_chains):
        axes[-1].plot(draws, trace[chain], lw=0.7, marker=marker, color=f"C{chain % 10}",
                      label=f"chain {chain}")
    axes[-1].set_ylabel(invariant)
    axes[-1].set_xlabel("draw")
    axes[0].set_title("leading components by chain; last panel label-invariant")
    if fit.num_chains <= 10:
        axes[0].legend(fontsize="small", ncol=min(fit.num_chains, 5))
    return axes


def plot_weights_against_posterior(map_fit, posterior_fit, *, num_shown=None, ax=None):
    """Sorted MAP weights beside box plots of the relabelled posterior weights.

    The posterior fit is relabelled with ``"pivot"`` first unless it already
    was (``posterior_fit.permutations`` set). Its components are shown in
    order of decreasing posterior mean weight, one box per component; the
    MAP weights of the best restart, sorted, are the markers of
    ``ax.lines[-1]``.

    Parameters
    ----------
    map_fit : Fit
        A ``"map"`` fit.
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
    if map_fit.backend != "map":
        raise ValueError(f"map_fit must be a 'map' fit, got backend {map_fit.backend!r}")
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


def plot_coclustering(fit, x=None, *, partition=None, max_points=500, rng_key=0, ax=None):
    """Heat map of the co-clustering matrix, points ordered by a point partition.

    Rows and columns are the points of :func:`~dpgmm_ppl.labels.coclustering_matrix`
    (a subsample of at most ``max_points``), sorted by their cluster in
    ``partition`` (by default :func:`~dpgmm_ppl.labels.point_partition`
    with the VI loss) and, within a cluster, by value (first coordinate):
    blocks on the diagonal are the clusters, off-diagonal shading the
    uncertainty between them.

    Parameters
    ----------
    fit : Fit
    x : array, optional
        Points; ``fit.data`` by default.
    partition : array of int, optional
        Cluster labels of every point of ``x``.
    max_points : int
        Size of the subsample drawn in the matrix.
    rng_key : int
        Seeds the subsample.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.images[0]`` holds the ordered matrix.
    """
    check_fit(fit)
    max_points = check_positive_int("max_points", max_points)
    points = np.asarray(fit.data if x is None else x)
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
    ax = plt.subplots(figsize=(5, 5))[1] if ax is None else ax
    image = ax.imshow(similarity.matrix[np.ix_(order, order)], vmin=0.0, vmax=1.0,
                      cmap="viridis", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label="P(same component)")
    ax.set_xlabel("point (by cluster, then value)")
    ax.set_ylabel("point")
    ax.set_title(f"co-clustering, {len(np.unique(partition))} clusters in the point partition")
    return ax


def plot_num_clusters(fit, x=None, *, threshold=0.01, rng_key=0, ax=None):
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
