"""Vector data: the points with each component drawn as an ellipse."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dpgmm_ppl.fit import covariance_matrices
from dpgmm_ppl.plots._common import GRID_PAD, chain_index, check_fit

__all__ = ["component_ellipses", "plot_components"]

#: Points drawn at most in the scatter (an evenly strided subset of larger data).
MAX_SCATTER_POINTS = 5000
#: Grid points per axis of the density contours.
CONTOUR_GRID = 80


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


def component_ellipses(fit, *, chain=None, dims=(0, 1), num_std=2.0):
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
    >>> from dpgmm_ppl.fit import Fit
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
    covariances = covariance_matrices(samples).mean(axis=0)[:, dims][:, :, dims]
    weights = samples["weights"].mean(axis=0)
    centres = samples["loc"].mean(axis=0)[:, dims]
    variances, axes = np.linalg.eigh(covariances)  # ascending eigenvalues
    major = axes[:, :, 1]
    angles = np.degrees(np.arctan2(major[:, 1], major[:, 0]))
    lengths = 2.0 * num_std * np.sqrt(np.maximum(variances, 0.0))
    return weights, centres, lengths[:, 1], lengths[:, 0], angles


def plot_components(
    fit,
    data=None,
    *,
    chain=None,
    dims=(0, 1),
    component_threshold=0.01,
    num_std=2.0,
    contours=True,
    ax=None,
):
    """The points with each weighted component drawn as an ellipse (vector data).

    One ellipse (``ax.patches``, in order of decreasing weight) per component
    whose mean weight exceeds ``component_threshold``, at ``num_std``
    standard deviations, from :func:`component_ellipses`; its line width grows
    with the weight. For 2-d data, ``contours`` adds the predictive density
    of the fit (the mean over all draws for posterior backends, the best
    restart for MAP) as contour lines.

    Parameters
    ----------
    fit : Fit
        A fit to vector data, ``D >= 2``.
    data : array of shape (N, D), optional
        Points to scatter; default ``fit.data`` (at most 5,000 drawn).
    chain : int, optional
    dims : tuple of two ints
    component_threshold : float
    num_std : float
    contours : bool
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl.fit import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(-4, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.array([[[0.5, 0.495, 0.005]]]),
    ...            "loc": np.array([[[[-4.0, -4.0], [4.0, 4.0], [0.0, 0.0]]]]),
    ...            "scale": np.ones((1, 1, 3))}  # spherical: one scale per component
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, x, 3, Priors().resolve(x),
    ...           covariance="spherical")
    >>> len(plot_components(fit).patches)  # the components above 1% weight
    2
    """
    from matplotlib.patches import Ellipse

    check_fit(fit, component_threshold=component_threshold)
    dims = _check_dims(fit, tuple(dims) if isinstance(dims, list) else dims)
    points = fit.data if data is None else np.asarray(data, np.float64)
    if points.ndim != 2 or points.shape[1] != fit.dim or not np.all(np.isfinite(points)):
        raise ValueError(
            f"data must be finite points of shape (N, {fit.dim}), got shape {np.shape(points)}"
        )
    weights, centres, widths, heights, angles = component_ellipses(
        fit, chain=chain, dims=tuple(dims), num_std=num_std
    )
    ax = plt.subplots()[1] if ax is None else ax
    shown = points[:: max(1, points.shape[0] // MAX_SCATTER_POINTS)][:, dims]
    ax.scatter(shown[:, 0], shown[:, 1], s=4, color="0.6", alpha=0.6, label="data")
    if contours and fit.dim == 2:
        _draw_contours(fit, points, ax)
    order = [k for k in np.argsort(-weights) if weights[k] > component_threshold]
    for rank, k in enumerate(order):
        ax.add_patch(Ellipse(
            centres[k], widths[k], heights[k], angle=angles[k], fill=False,
            color=f"C{rank % 10}", lw=0.8 + 4.0 * weights[k],
            label=f"w = {weights[k]:.2f}",
        ))
        ax.plot(*centres[k], "+", color=f"C{rank % 10}")
    ax.set_xlabel(f"x[{dims[0]}]")
    ax.set_ylabel(f"x[{dims[1]}]")
    ax.set_title(f"{fit.backend}, covariance={fit.covariance!r}: ellipses at {num_std:g} sd")
    ax.legend(loc="best", fontsize="small")
    return ax


def _draw_contours(fit, points, ax):
    low, high = points.min(axis=0), points.max(axis=0)
    pad = GRID_PAD * np.where(high > low, high - low, 1.0)
    axes = [np.linspace(lo - p, hi + p, CONTOUR_GRID) for lo, hi, p in zip(low, high, pad)]
    grid_x, grid_y = np.meshgrid(*axes)
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1)
    density = np.exp(fit.log_predictive_density(grid)).reshape(grid_x.shape)
    ax.contour(grid_x, grid_y, density, levels=8, colors="k", linewidths=0.6, alpha=0.7)
