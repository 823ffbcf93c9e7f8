"""The figures ``dpgmm-ppl fit`` and ``dpgmm-ppl demo`` write, each one whole or not at all.

The drawing is :mod:`dpgmm_ppl.plots`'s; this module picks the figures that
make sense for a fit (density plots need 1-d data, the ellipses of the
components two columns or more, a pair plot beyond two, the loss an
optimiser, the trace plot Markov chains) and says why it leaves out the
others. Every axis that shows a column of the data carries its name from
the CSV header.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FIGURES", "draw_figure", "plan_figures", "save_figure", "write_figure"]

#: Every figure the command can write, in the order it writes them.
FIGURES = ("density.png", "components.png", "weights.png", "loss.png", "training.gif", "trace.png")

#: Frames of the training animation, and its resolution (as plots.save_figures).
MAX_FRAMES, GIF_DPI = 100, 60


def _reason_to_skip(name, backend, shape):
    """Why figure ``name`` does not fit data of ``shape`` and ``backend`` (a
    :class:`~dpgmm_ppl.infer.Backend`); ``None`` if it does."""
    is_scalar = len(shape) == 1
    if name in ("density.png", "training.gif") and not is_scalar:
        return f"needs 1-d data; the data have {shape[1]} columns"
    if name == "components.png" and (is_scalar or shape[1] < 2):
        return "drawn for data of two or more columns (1-d data get density.png)"
    if name in ("loss.png", "training.gif") and not backend.records_losses:
        return f"{backend.name.upper()} records no loss or optimisation history"
    if name == "trace.png" and not backend.is_mcmc:
        return (f"drawn for Markov chains only (NUTS); {backend.name.upper()} draws "
                "are not Markov chains")
    return None


def plan_figures(backend, shape, *, enabled=True):
    """The figures to draw for a fit, and the reason each other one is left out.

    Parameters
    ----------
    backend : str
        The name of a registered backend; its kind decides the loss,
        animation and trace figures.
    shape : tuple
        Shape of the data, ``(N,)`` or ``(N, D)``.
    enabled : bool
        ``False`` leaves every figure out (``--no-figures``).

    Returns
    -------
    (list of str, dict of str to str)
        Names to draw; names left out, with the reason.

    Examples
    --------
    >>> drawn, skipped = plan_figures("nuts", (100, 2))
    >>> drawn, sorted(skipped)
    (['components.png', 'weights.png', 'trace.png'], ['density.png', 'loss.png', 'training.gif'])
    """
    from dpgmm_ppl.infer import get_backend

    backend = get_backend(backend)
    drawn, skipped = [], {}
    for name in FIGURES:
        reason = "--no-figures" if not enabled else _reason_to_skip(name, backend, shape)
        if reason is None:
            drawn.append(name)
        else:
            skipped[name] = reason
    return drawn, skipped


def save_figure(figure, path, **savefig_options):
    """Save a matplotlib figure to ``path`` whole or not at all, then close it."""
    import matplotlib.pyplot as plt

    from dpgmm_ppl.persistence import atomic_output

    try:
        with atomic_output(path) as temporary:
            figure.savefig(temporary, format=Path(path).suffix[1:], **savefig_options)
    finally:
        plt.close(figure)
    return Path(path)


def draw_figure(name, fit, *, names=None):
    """The matplotlib Figure of figure ``name`` (not the GIF), its axes named after ``names``.

    ``names`` are the data's column names (the CSV header; default
    ``fit.names``). ``components.png`` is the pair plot of every column for
    more than two (:func:`dpgmm_ppl.plots.plot_components`), and
    ``trace.png`` traces every column up to four.
    """
    import matplotlib.pyplot as plt

    from dpgmm_ppl import plots
    from dpgmm_ppl.plots.training import figure_of

    draw = {
        "density.png": lambda: plots.plot_density(fit, names=names),
        "components.png": lambda: plots.plot_components(fit, names=names),
        "weights.png": lambda: plots.plot_weights(fit),
        "loss.png": lambda: plots.plot_loss(fit),
        "trace.png": lambda: plots.plot_label_switching(
            fit, num_leading=min(4, fit.num_components), names=names),
    }[name]
    before = set(plt.get_fignums())
    try:
        return figure_of(draw())
    except BaseException:
        for number in set(plt.get_fignums()) - before:
            plt.close(number)
        raise


def write_figure(name, fit, out_dir, *, names=None):
    """Draw figure ``name`` of ``fit`` and write it to ``out_dir / name`` atomically.

    ``names`` label the axes (:func:`draw_figure`).
    """
    import matplotlib.pyplot as plt

    from dpgmm_ppl.persistence import atomic_output
    from dpgmm_ppl.plots.training import _training_animation

    path = Path(out_dir) / name
    if name == "training.gif":
        figure, animation = _training_animation(fit, None, max_frames=MAX_FRAMES, names=names)
        try:
            with atomic_output(path) as temporary:
                animation.save(temporary, writer="pillow", dpi=GIF_DPI)
        finally:
            plt.close(figure)
        return path
    return save_figure(draw_figure(name, fit, names=names), path)
