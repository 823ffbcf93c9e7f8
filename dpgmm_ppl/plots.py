"""Matplotlib figures of a :class:`~dpgmm_ppl.fit.Fit`: density, weights, loss, training.

Post-processing only: nothing here re-fits. Each ``plot_*`` function takes
``ax=None`` (a new pyplot figure when omitted) and returns the Axes. Only this
module imports matplotlib. Density plots are for scalar data only, for now.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation

from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.fit import Fit

__all__ = [
    "animate_training",
    "plot_density",
    "plot_loss",
    "plot_predictive_comparison",
    "plot_weights",
    "save_figures",
]

#: Points of the grid on which densities are drawn.
GRID_SIZE = 500
#: The grid extends past the data by this fraction of the data's range on each side.
GRID_PAD = 0.1
#: Individual draws drawn faintly behind the mean in :func:`plot_weights`.
MAX_FAINT_DRAWS = 100


def _check(fit, *, bins=1, component_threshold=0.0):
    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a dpgmm_ppl.Fit, got {type(fit).__name__}")
    check_positive_int("bins", bins)
    if not 0.0 <= component_threshold < 1.0:
        raise ValueError(f"component_threshold must be in [0, 1), got {component_threshold!r}")


def _data_1d(fit, data):
    data = fit.data if data is None else np.asarray(data)
    if fit.dim is not None or data.ndim != 1:
        shape = fit.data.shape if fit.dim is not None else data.shape
        raise ValueError(f"density plots need 1-d data of shape (N,), got shape {shape}")
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ValueError("data must be a non-empty array of finite numbers")
    return data


def _chain_index(fit, chain):
    """``chain`` as a non-negative index; ``None`` means the best chain."""
    if chain is None:
        return fit.best_chain
    if isinstance(chain, (bool, np.bool_)) or not isinstance(chain, (int, np.integer)):
        raise TypeError(f"chain must be an int or None, got {chain!r}")
    if not -fit.num_chains <= chain < fit.num_chains:
        raise ValueError(f"chain must be in [0, {fit.num_chains}), got {chain}")
    return int(chain) % fit.num_chains


def _grid(data):
    low, high = float(np.min(data)), float(np.max(data))
    pad = GRID_PAD * (high - low) if high > low else 1.0
    return np.linspace(low - pad, high + pad, GRID_SIZE)


def _weighted_components(weights, loc, scale, grid):
    """:math:`w_k \\mathcal{N}(x \\mid \\mu_k, \\sigma_k)` on ``grid``: shape ``(..., K, G)``."""
    weights, loc, scale = (np.asarray(a, np.float64)[..., None] for a in (weights, loc, scale))
    z = (grid - loc) / scale
    return weights * np.exp(-0.5 * z**2) / (scale * math.sqrt(2.0 * math.pi))


def _density_axes(ax, data, bins, histtype="bar"):
    heights = ax.hist(data, bins, density=True, histtype=histtype, color="0.8", label="data")[0]
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    return heights


def plot_density(fit, data=None, *, chain=None, bins=100, component_threshold=0.01, ax=None):
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
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, dpgmm_ppl
    >>> x = np.r_[np.linspace(-6, -4, 50), np.linspace(4, 6, 50)]
    >>> len(plot_density(dpgmm_ppl.fit(x, num_components=3, num_steps=200)).patches)
    100
    """
    _check(fit, bins=bins, component_threshold=component_threshold)
    data = _data_1d(fit, data)
    index = _chain_index(fit, chain)
    ax = plt.subplots()[1] if ax is None else ax
    _density_axes(ax, data, bins)
    grid = _grid(data)
    density = np.exp(fit.log_predictive_density(grid, chain=chain))
    ax.plot(grid, density, "k", lw=2, label="mixture")
    names = ("weights", "loc", "scale")
    weights, loc, scale = (np.mean(fit.samples[name][index], axis=0) for name in names)
    curves = _weighted_components(weights, loc, scale, grid)
    for i, k in enumerate(np.flatnonzero(weights > component_threshold)):
        label = "_nolegend_" if i else "components"
        ax.plot(grid, curves[k], lw=1, ls="--", color=f"C{i % 10}", label=label)
    ax.legend()
    return ax


def plot_weights(fit, *, chain=None, ax=None):
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
    _check(fit)
    if chain is None and fit.backend != "map":
        weights = fit.samples["weights"]
    else:
        index = _chain_index(fit, chain)
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


def plot_loss(fit, *, ax=None):
    """Loss against step for each chain (restart), on a log scale.

    The objective (minus a log density) can be negative, so the curve drawn is
    ``loss - min(loss) + 1``, with one minimum over all chains and steps so that
    the chains stay comparable and the best point sits at 1. Raises
    ``ValueError`` if ``fit.losses`` is None (NUTS records no loss).

    Parameters
    ----------
    fit : Fit
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    _check(fit)
    if fit.losses is None:
        raise ValueError(f"fit.losses is None: the {fit.backend!r} backend records no loss")
    losses = np.asarray(fit.losses, np.float64)
    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        raise ValueError("fit.losses has no finite value to plot")
    ax = plt.subplots()[1] if ax is None else ax
    steps = np.arange(1, losses.shape[1] + 1)
    for chain, chain_losses in enumerate(losses):
        best = " (best)" if chain == fit.best_chain and fit.num_chains > 1 else ""
        ax.plot(steps, chain_losses - finite.min() + 1.0, lw=1, label=f"chain {chain}{best}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss - min(loss) + 1")
    if 1 < fit.num_chains <= 10:
        ax.legend()
    return ax


def _training_animation(
    fit, data, *, chain=None, interval=50, bins=100, component_threshold=0.01, max_frames=None
):
    _check(fit, bins=bins, component_threshold=component_threshold)
    if fit.history is None or fit.history_steps is None:
        raise ValueError(f"fit.history is None: this {fit.backend!r} fit recorded no history")
    data = _data_1d(fit, data)
    index = _chain_index(fit, chain)
    frames = np.arange(len(fit.history_steps))
    if max_frames is not None and len(frames) > check_positive_int("max_frames", max_frames):
        frames = np.unique(np.round(np.linspace(0, len(frames) - 1, max_frames)).astype(int))
    steps = np.asarray(fit.history_steps)[frames]
    weights, loc, scale = (fit.history[k][index, frames] for k in ("weights", "loc", "scale"))
    grid = _grid(data)
    curves = _weighted_components(weights, loc, scale, grid)  # (frame, K, G)
    mixture = curves.sum(axis=1)

    fig, ax = plt.subplots()
    # One filled outline instead of `bins` bars: a frame draws in about half the time.
    heights = _density_axes(ax, data, bins, histtype="stepfilled")
    (mixture_line,) = ax.plot(grid, mixture[0], "k", lw=2)
    lines = [
        ax.plot(grid, curve, lw=1, ls="--", color=f"C{k % 10}")[0]
        for k, curve in enumerate(curves[0])
    ]
    # Early frames can peak far higher; the data and the final fit set the scale.
    ax.set_ylim(0.0, 1.1 * max(float(np.max(heights)), float(np.max(mixture[-1]))))
    title = ax.set_title("")

    def update(frame):
        mixture_line.set_ydata(mixture[frame])
        for k, line in enumerate(lines):
            line.set_ydata(curves[frame, k])
            line.set_visible(bool(weights[frame, k] > component_threshold))
        title.set_text(f"step {steps[frame]}")
        return [mixture_line, *lines, title]

    update(0)
    return fig, FuncAnimation(fig, update, frames=len(frames), interval=interval, blit=False)


def animate_training(
    fit, data=None, *, chain=None, interval=50, bins=100, component_threshold=0.01, max_frames=None
):
    """Animation of the mixture density over the recorded (MAP) parameter history.

    Frame ``i`` shows the histogram, the mixture density and the weighted
    components above ``component_threshold`` of ``fit.history`` at step
    ``fit.history_steps[i]`` of one chain (``chain``, default the best), with
    the step in the title. Raises ``ValueError`` if the fit has no history.

    Parameters
    ----------
    fit, data, chain, bins, component_threshold
        As in :func:`plot_density`.
    interval : int
        Milliseconds between frames.
    max_frames : int, optional
        Keep at most this many frames, evenly spread, first and last included.

    Returns
    -------
    matplotlib.animation.FuncAnimation
        Save it with ``animation.save("training.gif", writer="pillow")``.
    """
    options = dict(chain=chain, interval=interval, bins=bins, max_frames=max_frames)
    return _training_animation(fit, data, component_threshold=component_threshold, **options)[1]


def save_figures(fit, out_dir, *, data=None, max_frames=100, dpi=60):
    """Write ``density.png``, ``weights.png``, ``loss.png`` and ``training.gif`` to ``out_dir``.

    ``loss.png`` and ``training.gif`` are skipped for a fit without losses or
    history (NUTS). The GIF keeps at most ``max_frames`` frames, at ``dpi``.
    ``out_dir`` is created if missing; ``data`` defaults to ``fit.data``.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    _check(fit)
    data = _data_1d(fit, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {"density.png": lambda ax: plot_density(fit, data, ax=ax)}
    plots["weights.png"] = lambda ax: plot_weights(fit, ax=ax)
    if fit.losses is not None:
        plots["loss.png"] = lambda ax: plot_loss(fit, ax=ax)
    paths = []
    for name, draw in plots.items():
        fig, ax = plt.subplots()
        try:
            draw(ax)
            fig.savefig(out_dir / name)
        finally:
            plt.close(fig)
        paths.append(out_dir / name)
    if fit.history is not None:
        fig, animation = _training_animation(fit, data, max_frames=max_frames)
        try:
            animation.save(out_dir / "training.gif", writer="pillow", dpi=dpi)
        finally:
            plt.close(fig)
        paths.append(out_dir / "training.gif")
    return paths


def plot_predictive_comparison(fits, data=None, *, hdi_prob=0.9, bins=100, ax=None):
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
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not fits:
        raise ValueError("fits must hold at least one fit")
    for fit in fits.values():
        _check(fit, bins=bins)
    first = next(iter(fits.values()))
    data = _data_1d(first, data)
    ax = plt.subplots(figsize=(8, 4))[1] if ax is None else ax
    _density_axes(ax, data, bins, histtype="stepfilled")
    grid = _grid(data)
    for name, fit in fits.items():
        band = fit.predictive_density(grid, hdi_prob=hdi_prob)
        (line,) = ax.plot(grid, band.mean, label=f"{name} ({fit.backend})" if name != fit.backend else name)
        if fit.backend != "map":
            ax.fill_between(grid, band.lower, band.upper, color=line.get_color(), alpha=0.25)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(f"predictive densities; bands: {hdi_prob:.0%} HDI over draws")
    ax.legend()
    return ax
