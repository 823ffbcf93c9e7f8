"""Fitted densities and weights over the data, one fit or several side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np

from dpgmm_ppl.plots._common import (
    chain_index,
    check_fit,
    data_1d,
    density_axes,
    density_grid,
    dimension_names,
    weighted_components,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

    from dpgmm_ppl.result import Fit

__all__ = ["plot_density", "plot_predictive_comparison", "plot_weights"]

#: Individual draws drawn faintly behind the mean in :func:`plot_weights`.
MAX_FAINT_DRAWS = 100


def plot_density(
    fit: Fit,
    data: ArrayLike | None = None,
    *,
    chain: int | None = None,
    bins: int = 100,
    component_threshold: float = 0.01,
    names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Histogram of the data with the fitted mixture density and its weighted components.

    ``ax.lines[0]`` is ``exp(fit.log_predictive_density(grid, chain=chain))`` on
    a grid spanning the data (padded by 10% each side): for MAP the best restart
    unless ``chain`` is given, for posterior backends the mean density over all
    draws (or the draws of ``chain``). ``ax.lines[1:]`` are the components
    :math:`w_k \\mathcal{N}(x \\mid \\mu_k, \\sigma_k)` with :math:`w_k` above
    ``component_threshold``, from the posterior-mean parameters of one chain
    (``chain``, default the best; for MAP its single draw). That mean is only
    meaningful if the labels do not switch within the chain.

    Parameters
    ----------
    fit : Fit
        A fit to scalar data.
    data : array of shape (N,), optional
        Data for the density-normalised histogram; default ``fit.data``.
    chain : int, optional
    bins : int
    component_threshold : float
    names : sequence of one str, optional
        The data's name for the x axis; default ``fit.names``, else ``"x"``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, dpgmm_ppl
    >>> x = np.r_[np.linspace(-6, -4, 50), np.linspace(4, 6, 50)]
    >>> len(plot_density(dpgmm_ppl.fit(x, num_components=5, num_steps=200)).patches)
    100
    """
    check_fit(fit, bins=bins, component_threshold=component_threshold)
    data = data_1d(fit, data)
    index = chain_index(fit, chain)
    ax = plt.subplots()[1] if ax is None else ax
    density_axes(ax, data, bins, xlabel=dimension_names(fit, names)[0])
    grid = density_grid(data)
    density = np.exp(fit.log_predictive_density(grid, chain=chain))
    ax.plot(grid, density, "k", lw=2, label="mixture")
    sites = ("weights", "loc", "scale")
    weights, loc, scale = (np.mean(fit.samples[site][index], axis=0) for site in sites)
    curves = weighted_components(weights, loc, scale, grid)
    for i, k in enumerate(np.flatnonzero(weights > component_threshold)):
        label = "_nolegend_" if i else "components"
        ax.plot(grid, curves[k], lw=1, ls="--", color=f"C{i % 10}", label=label)
    ax.legend()
    return ax


def plot_weights(fit: Fit, *, chain: int | None = None, ax: Axes | None = None) -> Axes:
    """Mixture weights, normalised and sorted in decreasing order, against their rank.

    For MAP, the weights of the best restart (or of ``chain``). For posterior
    backends, each draw (of all chains, or of ``chain``) is sorted; the mean of
    the sorted weights is drawn last (``ax.lines[-1]``, marker ``"o"``) over up
    to 100 faint draws.

    Parameters
    ----------
    fit : Fit
    chain : int, optional
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    check_fit(fit)
    if chain is None and not fit.is_point_estimate:
        weights = fit.samples["weights"]
    else:
        index = chain_index(fit, chain)
        weights = fit.samples["weights"][index : index + 1]
    weights = np.asarray(weights, np.float64).reshape(-1, fit.num_components)
    weights = -np.sort(-weights / weights.sum(axis=-1, keepdims=True), axis=-1)
    ax = plt.subplots()[1] if ax is None else ax
    if weights.shape[0] > 1:
        ax.plot(weights[:MAX_FAINT_DRAWS].T, color="C0", alpha=0.1, lw=1)
    ax.plot(weights.mean(axis=0), marker="o", color="C0")
    ax.set_xlabel("component, by decreasing weight")
    ax.set_ylabel("weight")
    return ax


def plot_predictive_comparison(
    fits: Mapping[str, Fit],
    data: ArrayLike | None = None,
    *,
    hdi_prob: float = 0.9,
    bins: int = 100,
    names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Predictive densities of several fits over one histogram.

    A MAP fit is a line; a posterior (SVI, NUTS) is its mean density with an
    HDI band over draws, so the point estimate sits against the posterior's
    uncertainty.

    Parameters
    ----------
    fits : dict of str to Fit
        Fits of the same 1-d data, e.g. ``compare(...).fits``.
    data : array, optional
        Points for the histogram; the first fit's training data by default.
    hdi_prob : float
        Mass of the bands.
    bins : int
        Histogram bins.
    names : sequence of one str, optional
        The data's name for the x axis; default the first fit's ``names``, else ``"x"``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not fits:
        raise ValueError("fits must hold at least one fit")
    for fit in fits.values():
        check_fit(fit, bins=bins)
    first = next(iter(fits.values()))
    data = data_1d(first, data)
    ax = plt.subplots(figsize=(8, 4))[1] if ax is None else ax
    density_axes(ax, data, bins, histtype="stepfilled", xlabel=dimension_names(first, names)[0])
    grid = density_grid(data)
    for name, fit in fits.items():
        band = fit.predictive_density(grid, hdi_prob=hdi_prob)
        # The backend is added to a name that does not already say it ("NUTS" does).
        label = name if fit.backend in name.lower() else f"{name} ({fit.backend})"
        (line,) = ax.plot(grid, band.mean, label=label)
        if not fit.is_point_estimate:
            ax.fill_between(grid, band.lower, band.upper, color=line.get_color(), alpha=0.25)
    ax.set_ylabel("density")
    ax.set_title(f"predictive densities; bands: {hdi_prob:.0%} HDI over draws")
    ax.legend()
    return ax
