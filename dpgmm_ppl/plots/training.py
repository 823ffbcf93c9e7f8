"""The optimisation trace of MAP and SVI: the loss, and the training animation."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation

from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.plots._common import (
    chain_index,
    check_fit,
    data_1d,
    density_axes,
    density_grid,
    weighted_components,
)
from dpgmm_ppl.plots.components import plot_components
from dpgmm_ppl.plots.density import plot_density, plot_weights

__all__ = ["animate_training", "plot_loss", "save_figures"]


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
    check_fit(fit)
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
    check_fit(fit, bins=bins, component_threshold=component_threshold)
    if fit.history is None or fit.history_steps is None:
        raise ValueError(f"fit.history is None: this {fit.backend!r} fit recorded no history")
    data = data_1d(fit, data)
    index = chain_index(fit, chain)
    frames = np.arange(len(fit.history_steps))
    if max_frames is not None and len(frames) > check_positive_int("max_frames", max_frames):
        frames = np.unique(np.round(np.linspace(0, len(frames) - 1, max_frames)).astype(int))
    steps = np.asarray(fit.history_steps)[frames]
    weights, loc, scale = (fit.history[k][index, frames] for k in ("weights", "loc", "scale"))
    grid = density_grid(data)
    curves = weighted_components(weights, loc, scale, grid)  # (frame, K, G)
    mixture = curves.sum(axis=1)

    fig, ax = plt.subplots()
    # One filled outline instead of `bins` bars: a frame draws in about half the time.
    heights = density_axes(ax, data, bins, histtype="stepfilled")
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
    For vector data, ``components.png`` (:func:`~dpgmm_ppl.plots.plot_components`,
    the first two coordinates) takes the place of ``density.png``, and there
    is no GIF.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    check_fit(fit)
    is_scalar = fit.dim is None
    if is_scalar:
        data = data_1d(fit, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {}
    if is_scalar:
        plots["density.png"] = lambda ax: plot_density(fit, data, ax=ax)
    elif fit.dim >= 2:
        plots["components.png"] = lambda ax: plot_components(fit, data, ax=ax)
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
    if fit.history is not None and is_scalar:
        fig, animation = _training_animation(fit, data, max_frames=max_frames)
        try:
            animation.save(out_dir / "training.gif", writer="pillow", dpi=dpi)
        finally:
            plt.close(fig)
        paths.append(out_dir / "training.gif")
    return paths
