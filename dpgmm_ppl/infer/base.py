"""The protocol every inference backend follows.

A backend is a :class:`Backend`: a name, its options with their defaults, and
a pure ``run`` function. ``run(rng_key, density, *, num_chains, **options)``
takes the shared :class:`~dpgmm_ppl.density.LogDensity` and returns a
:class:`BackendOutput`, whose arrays all lead with ``(chain, draw)``; the
:class:`~dpgmm_ppl.fit.Fit` is built from it the same way for every backend.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

__all__ = ["Backend", "BackendOutput", "check_chart"]


class BackendOutput(NamedTuple):
    """What a backend hands back.

    Attributes
    ----------
    positions : dict
        Unconstrained positions, each leaf of shape ``(chain, draw, ...)``.
    sample_stats : dict
        Per-draw diagnostics, each of shape ``(chain, draw)``, in ArviZ's names
        where one exists (``lp``, ``diverging``, ``acceptance_rate``, ...).
    losses : Array or None
        Objective per optimisation step, ``(chain, step)``; ``None`` for MCMC.
    history : dict or None
        Constrained latent sites recorded during optimisation,
        ``(chain, frame, ...)``, for animations.
    history_steps : Array or None
        The step (1-based) at which each history frame was recorded.
    timing : dict
        ``compile_seconds`` and ``run_seconds``.
    density : LogDensity or None
        The density whose chart ``positions`` are in, when the backend moved
        to another chart of the same model and data than the one it was
        given (NUTS centring the sticks the data pin down); ``None``: the
        one it was given.
    """

    positions: dict
    sample_stats: dict
    losses: Optional[Any]
    history: Optional[dict]
    history_steps: Optional[Any]
    timing: dict
    density: Optional[Any] = None


class Backend(NamedTuple):
    """An inference backend: a name, its options and defaults, and ``run``."""

    name: str
    defaults: dict
    run: Callable[..., BackendOutput]
    validate: Callable[[dict], None]


def check_chart(density, parameterization):
    """Refuse a ``density`` built in another chart than the backend was asked for.

    The chart is fixed when the density is built (:func:`dpgmm_ppl.fit`
    builds it from the ``parameterization`` option); a backend run directly
    on a density of the other chart would silently sample other coordinates.
    """
    if density.parameterization != parameterization:
        raise ValueError(
            f"parameterization={parameterization!r}, but the density was built with "
            f"parameterization={density.parameterization!r}; build it with "
            f"build_log_density(..., parameterization={parameterization!r})"
        )
