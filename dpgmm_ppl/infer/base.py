"""The protocol every inference backend follows.

A backend is a :class:`Backend`: a name, its kind (one of :data:`KINDS`),
its options with their defaults, and a pure ``run`` function.
``run(rng_key, density, *, num_chains, **options)`` takes the shared
:class:`~dpgmm_ppl.density.LogDensity` and returns a :class:`BackendOutput`,
whose arrays all lead with ``(chain, draw)``; the
:class:`~dpgmm_ppl.Fit` is built from it the same way for every backend.

The rest of the package asks about the kind, never the name: whether the
chains are restarts to pick the best of or draws to pool, whether a loss was
recorded, whether the chains are Markov chains.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Optional

if TYPE_CHECKING:
    from dpgmm_ppl.density import LogDensity

__all__ = ["KINDS", "Backend", "BackendOutput", "check_chart"]

#: What a backend can be. ``"optimum"``: each chain is a restart that ends
#: at one point (one draw), and the best restart stands for the fit;
#: ``"variational"``: each chain is a restart whose draws come from a fitted
#: family, pooled like a posterior, with the loss of its optimisation;
#: ``"sampler"``: each chain is a Markov chain of posterior draws, pooled,
#: with no loss (trace plots, effective sample sizes and divergences apply).
KINDS = ("optimum", "variational", "sampler")


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
    """An inference backend: a name, its kind, its options and defaults, and ``run``.

    Attributes
    ----------
    name : str
        The name :func:`dpgmm_ppl.fit` takes as ``backend``.
    defaults : dict
        Every option the backend takes, with its default.
    run : callable
        ``run(rng_key, density, *, num_chains, **options)`` returning a
        :class:`BackendOutput`.
    validate : callable
        ``validate(options)`` raises ``ValueError``/``TypeError`` for a bad
        option, before anything is traced.
    kind : str
        One of :data:`KINDS`; what the rest of the package asks about.
    quick_options : Mapping
        Options for a short first look (``dpgmm-ppl fit --quick``,
        ``dpgmm-ppl compare --quick``); none by default.
    description : str
        What the backend does, in a few words, for help texts (``dpgmm-ppl
        fit --help``); empty by default, where the kind stands in.

    Examples
    --------
    >>> from dpgmm_ppl.infer import get_backend
    >>> nuts = get_backend("nuts")
    >>> nuts.kind, nuts.is_point_estimate, nuts.records_losses, nuts.is_mcmc
    ('sampler', False, False, True)
    """

    name: str
    defaults: dict
    run: Callable[..., BackendOutput]
    validate: Callable[[dict], None]
    kind: str
    quick_options: Mapping = MappingProxyType({})
    description: str = ""

    @property
    def is_point_estimate(self) -> bool:
        """Whether each chain is one point, the best of which stands for the fit."""
        return self.kind == "optimum"

    @property
    def records_losses(self) -> bool:
        """Whether the backend optimises, recording a loss per step (and a history)."""
        return self.kind in ("optimum", "variational")

    @property
    def is_mcmc(self) -> bool:
        """Whether the chains are Markov chains (trace plots, ESS, divergences)."""
        return self.kind == "sampler"


def check_chart(density: LogDensity, parameterization: str) -> None:
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
