"""The optimisation trace of MAP and SVI: the loss, and the training animation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

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
    dimension_names,
    weighted_components,
)
from dpgmm_ppl.plots.components import plot_components
from dpgmm_ppl.plots.density import plot_density, plot_weights

if TYPE_CHECKING:
    import os
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

    from dpgmm_ppl.result import Fit

__all__ = ["animate_training", "plot_loss", "save_figures"]


#: The running mean of :func:`plot_loss` spans this fraction of the steps by default.
WINDOW_FRACTION = 0.02
#: The y axis of :func:`plot_loss` is fitted to the steps after this fraction of them.
BURN_IN_FRACTION = 0.05


def running_mean(values, window):
    """Mean of each ``window`` consecutive values (the trailing window), along the last axis.

    Non-finite values are NaN here, and so is the mean of a window holding one.

    Examples
    --------
    >>> running_mean(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist()
    [1.5, 2.5, 3.5]
    """
    values = np.where(np.isfinite(values), values, np.nan)
    return np.lib.stride_tricks.sliding_window_view(values, window, axis=-1).mean(axis=-1)


def plot_loss(fit: Fit, *, window: int | None = None, ax: Axes | None = None) -> Axes:
    """The loss against step for each chain (restart): a running mean over the faint raw values.

    For SVI the loss is the negative ELBO, estimated afresh at every step
    from ``num_particles`` draws, so one step says little: the running mean
    of ``window`` steps (default 2% of them) shows the trend, and the raw
    values behind it (faint) its noise. For MAP the loss is minus the
    objective, and the running mean follows it closely. The y axis is
    linear and fitted to the steps after the first 5%, so that the early
    descent does not flatten the rest. Raises ``ValueError`` if
    ``fit.losses`` is None (NUTS records no loss).

    Parameters
    ----------
    fit : Fit
    window : int, optional
        Steps in each mean.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        ``ax.lines[2 * c]`` is chain ``c``'s raw loss, ``ax.lines[2 * c + 1]``
        its running mean, drawn at the last step of each window.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.ones((1, 1, 1)),
    ...            "loc": np.zeros((1, 1, 1)), "scale": np.ones((1, 1, 1))}
    >>> losses = 100.0 + np.random.default_rng(0).normal(0.0, 5.0, (1, 400))
    >>> fit = Fit("svi", samples, {"lp": np.zeros((1, 1))}, np.zeros(4), 1, Priors(),
    ...           losses=losses)
    >>> ax = plot_loss(fit, window=100)
    >>> ax.get_ylabel(), len(ax.lines[1].get_ydata())
    ('negative ELBO', 301)
    """
    check_fit(fit)
    if fit.losses is None:
        raise ValueError(f"fit.losses is None: the {fit.backend!r} backend records no loss")
    losses = np.asarray(fit.losses, np.float64)
    if not np.isfinite(losses).any():
        raise ValueError("fit.losses has no finite value to plot")
    num_steps = losses.shape[1]
    if window is None:
        window = max(1, round(WINDOW_FRACTION * num_steps))
    window = min(check_positive_int("window", window), num_steps)
    means = running_mean(losses, window)
    steps = np.arange(1, num_steps + 1)
    ax = plt.subplots()[1] if ax is None else ax
    for chain in range(fit.num_chains):
        color = f"C{chain % 10}"
        best = " (best)" if chain == fit.best_chain and fit.num_chains > 1 else ""
        ax.plot(steps, losses[chain], lw=0.5, alpha=0.25, color=color, label="_nolegend_")
        ax.plot(steps[window - 1 :], means[chain], lw=1.5, color=color, label=f"chain {chain}{best}")
    ax.set_ylim(*_loss_limits(losses, means, window))
    ax.set_xlabel("step")
    ax.set_ylabel("negative ELBO" if fit.kind == "variational" else "loss (minus the objective)")
    ax.set_title(f"{fit.backend}: running mean of {window} steps over the raw values (faint)",
                 fontsize="medium")
    if 1 < fit.num_chains <= 10:
        ax.legend()
    return ax


def _loss_limits(losses, means, window):
    """The y range of the running means and of most raw values, after the first steps."""
    start = int(BURN_IN_FRACTION * losses.shape[1])
    raw = losses[:, start:][np.isfinite(losses[:, start:])]
    later = means[:, max(0, start - window + 1) :]
    later = later[np.isfinite(later)]
    values = np.concatenate([later, np.percentile(raw, [1, 99]) if raw.size else []])
    if values.size == 0:  # only the first steps were finite
        values = losses[np.isfinite(losses)]
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low) if high > low else max(abs(low), 1.0) * 0.05
    return low - pad, high + pad


def _training_animation(
    fit, data, *, chain=None, interval=50, bins=100, component_threshold=0.01, max_frames=None,
    names=None,
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
    heights = density_axes(ax, data, bins, histtype="stepfilled",
                           xlabel=dimension_names(fit, names)[0])
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
    fit: Fit,
    data: ArrayLike | None = None,
    *,
    chain: int | None = None,
    interval: int = 50,
    bins: int = 100,
    component_threshold: float = 0.01,
    max_frames: int | None = None,
    names: Sequence[str] | None = None,
) -> FuncAnimation:
    """Animation of the mixture density over the recorded (MAP) parameter history.

    Frame ``i`` shows the histogram, the mixture density and the weighted
    components above ``component_threshold`` of ``fit.history`` at step
    ``fit.history_steps[i]`` of one chain (``chain``, default the best), with
    the step in the title. Raises ``ValueError`` if the fit has no history.

    Parameters
    ----------
    fit, data, chain, bins, component_threshold, names
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
    options = dict(chain=chain, interval=interval, bins=bins, max_frames=max_frames, names=names)
    return _training_animation(fit, data, component_threshold=component_threshold, **options)[1]


def figure_of(drawn):
    """The Figure of what a ``plot_*`` function returned: an Axes or an array of them.

    Examples
    --------
    >>> fig, axes = plt.subplots(2, 2)
    >>> figure_of(axes) is fig is figure_of(axes[0, 1])
    True
    >>> plt.close(fig)
    """
    return np.asarray(drawn, dtype=object).flat[0].figure


def save_figures(
    fit: Fit,
    out_dir: str | os.PathLike[str],
    *,
    data: ArrayLike | None = None,
    names: Sequence[str] | None = None,
    max_frames: int = 100,
    dpi: int = 60,
) -> list[Path]:
    """Write ``density.png``, ``weights.png``, ``loss.png`` and ``training.gif`` to ``out_dir``.

    ``loss.png`` and ``training.gif`` are skipped for a fit without losses or
    history (NUTS). The GIF keeps at most ``max_frames`` frames, at ``dpi``.
    ``out_dir`` is created if missing; ``data`` defaults to ``fit.data``.
    For vector data, ``components.png`` (:func:`~dpgmm_ppl.plots.plot_components`:
    the ellipses of two columns, or the pair plot of more) takes the place
    of ``density.png``, and there is no GIF. ``names`` (default
    ``fit.names``) label the axes.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    check_fit(fit)
    dimension_names(fit, names)  # refused here, before any file is written
    is_scalar = fit.dim is None
    if is_scalar:
        data = data_1d(fit, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Callable[[], Any]] = {}
    if is_scalar:
        plots["density.png"] = lambda: plot_density(fit, data, names=names)
    else:
        plots["components.png"] = lambda: plot_components(fit, data, names=names)
    plots["weights.png"] = lambda: plot_weights(fit)
    if fit.losses is not None:
        plots["loss.png"] = lambda: plot_loss(fit)
    paths = []
    for name, draw in plots.items():
        before = set(plt.get_fignums())
        try:
            figure_of(draw()).savefig(out_dir / name)
        finally:  # the figures this one opened, and no other
            for number in set(plt.get_fignums()) - before:
                plt.close(number)
        paths.append(out_dir / name)
    if fit.history is not None and is_scalar:
        fig, animation = _training_animation(fit, data, max_frames=max_frames, names=names)
        try:
            animation.save(out_dir / "training.gif", writer="pillow", dpi=dpi)
        finally:
            plt.close(fig)
        paths.append(out_dir / "training.gif")
    return paths
