r"""MAP by gradient descent: any optax optimiser inside ``lax.scan``.

Which point (``objective``)
---------------------------
A mode is a property of a density, and a density depends on the measure it
is taken against, so "the" posterior mode needs a choice of coordinates;
and a mixture's mode, whatever the coordinates, pays nothing for the
components it uses. The three objectives, measured on the galaxies (82
points), Old Faithful and iris (150 points in 4-D) in ``docs/mle-collapse.md``:

``"constrained"``: the log joint density of the constrained values
(``log_joint_fn``: ``alpha``, the simplex ``weights``, ``loc``, ``scale``),
the target of NumPyro's ``AutoDelta``. Kept for comparison, it is not a
sensible point estimate of this model: the stick-breaking density of the
weights on the simplex carries the Jacobian ``1 / prod_k r_k`` (``r_k`` the
stick left before component ``k``), which grows without bound as the weights
of unused components go to zero. The optimiser empties every component it
can (on the galaxies 7 of 8 restarts kept one) and the tail weights run down
to float32's smallest normal number, ``tiny``. The sum of ``log(1 - v_k)``
over the sticks then telescopes to ``log w_K = log(tiny)``, and the
concentration's optimum is ``alpha = (K + a - 2) / (b - log(tiny))`` under a
Gamma(a, b) prior: 0.27169 for K = 25 and Gamma(1, 1), whatever the data.

``"unconstrained"``: the density of the unconstrained position, log-Jacobian
of the transforms included, which is minus the shared ``potential_fn`` that
NUTS and SVI evaluate (in the non-centred chart of the sticks by default,
``parameterization``). This is what Stan's optimiser computes with
``jacobian=True``, the centre of a Laplace approximation. Every coordinate has
a finite optimum and ``lp`` stays finite, but a spare stick's coordinate sits
at the mode of its prior, which gives the spare a share of the weight, and
the only use of that weight is to split or duplicate a cluster: four
separated clusters in 5-D came out as eight components above 3% weight at K = 25.

``"occam"`` (the default): the ``"unconstrained"`` objective plus, for every
component, its Occam factor ``-(p / 2) log(1 + N w_k)``, where ``p`` is the
number of free parameters of a component (weight, location, scales,
correlations) and ``N w_k`` its share of the ``N`` points. This is the
log-volume that a Laplace approximation gives to the posterior mass around
a component the data pin down (``N w_k`` points shrink each of its ``p``
directions by about ``sqrt(N w_k)``), and it is zero for an empty one; the
same term, with counts, is the message length of Figueiredo and Jain
(2002) for finite mixtures. A component must now explain its points better
than its parameters cost, so MAP keeps the clusters the data support: the
four clusters above came out as four at K = 6 and 25. How narrow a
component on a handful of points may become is the scale prior's business
(``Priors(scale_rate=...)``; ``docs/mle-collapse.md`` measures the default
on iris, whose values are rounded to 0.1 cm).

Every ``history_every`` steps a restart is offered its components sorted by
weight (:func:`~dpgmm_ppl.infer._map_program.weight_order_step`). The
restart's best value of the objective is ``sample_stats["objective"]``,
which :attr:`Fit.best_chain <dpgmm_ppl.Fit.best_chain>` compares.

The component scales cannot collapse under any objective: their
inverse-gamma prior bounds the log joint (see :class:`~dpgmm_ppl.priors.Priors`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import numpy as np
import optax

from dpgmm_ppl._frame import UNITS_PER_SPREAD
from dpgmm_ppl._validation import check_parameterization, check_positive_int
from dpgmm_ppl.infer._common import (
    cached_program,
    chains_program,
    check_optimizer_options,
    compile_and_run,
    history_steps,
    resolve_optimizer_chain_method,
)
from dpgmm_ppl.infer._map_program import make_restart, objective_fn
from dpgmm_ppl.infer._optimise import optimizer_step
from dpgmm_ppl.infer._progress import check_progress_bar, optimiser_bar
from dpgmm_ppl.infer.base import Backend, BackendOutput, check_chart

if TYPE_CHECKING:
    from dpgmm_ppl.density import LogDensity

__all__ = ["MAP", "OBJECTIVES", "MAPInfo", "MAPState", "init", "run_map", "step"]

#: The notebook's optimiser, one object for every fit, so that fits share its program.
DEFAULT_OPTIMIZER = optax.adam(0.05)

#: A scale below this fraction of the data's spread counts as collapsed.
COLLAPSE_RATIO = 1e-4

#: The objectives MAP can maximise (see the module notes); the first is the default.
OBJECTIVES = ("occam", "unconstrained", "constrained")

#: A component "kept" by a fit has more than this weight; :func:`run_map`
#: warns when a restart keeps more than half of its components.
KEPT_WEIGHT = 0.01


def _warn_if_crowded(weights, objective_values, num_components):
    """Warn when the best restart keeps more than half of its K > 1 components.

    A component is kept above :data:`KEPT_WEIGHT` weight.
    The best restart is the fit's answer (:attr:`Fit.best_chain
    <dpgmm_ppl.Fit.best_chain>`): the highest value of the objective.
    """
    best = int(np.nanargmax(np.asarray(objective_values)))
    kept = int(np.sum(np.asarray(weights)[best] > KEPT_WEIGHT))
    # A single component is always kept: nothing to warn about.
    if num_components > 1 and 2 * kept > num_components:
        warnings.warn(
            f"MAP kept {kept} of {num_components} components above "
            f"{KEPT_WEIGHT:g} weight (best restart, {best}). Either the "
            "fit is overfitting the data (give the scales a stronger prior, "
            "Priors(scale_rate=...), or use a posterior backend, 'svi' or 'nuts') "
            "or num_components is too small for them (raise it).",
            UserWarning,
            stacklevel=4,
        )


def _spread_ratio(history, data_spread):
    """Each component's narrowest spread over the data's, per frame: (chain, frame, K).

    For full covariances the diagonal of ``scale_tril``: the standard
    deviation of each dimension given the ones before it, which vanishes
    when the component flattens onto fewer dimensions. The structure of the
    history's sites says which scales it holds
    (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.own_scales`).
    """
    from dpgmm_ppl.covariance import structure_of

    data_spread = np.asarray(data_spread)
    spread = structure_of(history).own_scales(history)
    loc_ndim = np.ndim(history["loc"])
    if spread.ndim < loc_ndim:  # spherical: compare with the data's mean spread
        return spread / np.exp(np.mean(np.log(data_spread)))
    ratio = spread / data_spread
    return ratio.min(axis=-1) if ratio.ndim == 4 else ratio


def _warn_on_failure(losses, history, history_steps, data_spread):
    losses = np.asarray(losses)
    for chain, chain_losses in enumerate(losses):
        bad = np.flatnonzero(~np.isfinite(chain_losses))
        if bad.size:
            warnings.warn(
                f"MAP restart {chain}: the objective became non-finite at step "
                f"{bad[0] + 1}; the parameters were kept at the last finite point. "
                "This usually means a component's scale collapsed (an improper or "
                "too weak prior on `scale`).",
                RuntimeWarning,
                stacklevel=4,
            )
    ratio = _spread_ratio(history, data_spread)
    collapsed = ratio < COLLAPSE_RATIO  # (chain, frame, component)
    for chain in range(collapsed.shape[0]):
        frames, components = np.nonzero(collapsed[chain])
        if frames.size:
            first = np.argmin(frames)
            warnings.warn(
                f"MAP restart {chain}: component {components[first]} collapsed "
                f"(scale < {COLLAPSE_RATIO:g} x the data's spread) by step "
                f"{history_steps[frames[first]]}.",
                RuntimeWarning,
                stacklevel=4,
            )


def run_map(
    rng_key: jax.Array,
    density: LogDensity,
    *,
    num_chains: int,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    history_every: int,
    chain_method: str | None,
    objective: str = "occam",
    parameterization: str = "noncentered",
    progress_bar: bool = False,
) -> BackendOutput:
    """Run ``num_chains`` vmapped MAP restarts on the shared log-density.

    Parameters
    ----------
    rng_key : PRNGKey
        Seeds the k-means++ initialisation of each restart.
    density : LogDensity
        The shared log-density.
    num_chains : int
        Independent restarts.
    optimizer : optax.GradientTransformation
        Any optax transformation; ``optax.adam(0.05)`` by default, as in the notebook.
    num_steps : int
        Gradient steps per restart.
    history_every : int
        Record the parameters every this many steps (and at the last step).
    chain_method : {"vectorized", "sequential", None}
        ``"vectorized"`` runs the restarts under ``vmap``; ``"sequential"``
        under ``lax.map``, one after another in the same compiled program.
        ``None`` picks ``"sequential"`` on the CPU, where XLA's reductions over
        a batched (chain, data, component) array measured 1.5-5x slower per
        restart than over one restart at a time, and ``"vectorized"`` on
        accelerators. Both give the same result for the same key.
    objective : {"occam", "unconstrained", "constrained"}
        ``"occam"``: the density of the unconstrained position with each
        component's Occam factor. ``"unconstrained"``: that density alone
        (minus ``potential_fn``). ``"constrained"``: the log joint of the
        constrained values (``log_joint_fn``), which empties components.
        See the module notes.
    parameterization : {"noncentered", "centered"}
        The chart of the sticks in which the optimiser moves; with
        ``"occam"`` and ``"unconstrained"`` it also sets which density is
        maximised. Must be the chart ``density`` was built in.
    progress_bar : bool
        Show a tqdm bar of the steps of every restart on stderr. In a long
        fit it is advanced by a ``jax.debug.callback`` once every
        ``history_every`` steps, so the step loop runs as fast, and gives the
        same result, as without it; a short fit, whose program the caches
        then keep, shows its steps when it is done
        (:func:`~dpgmm_ppl.infer._progress.optimiser_bar`).

    Returns
    -------
    BackendOutput
        One draw per chain; ``losses`` of shape ``(num_chains, num_steps)``.
    """
    check_chart(density, parameterization)
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    bar = optimiser_bar("MAP", density, num_chains * num_steps, progress_bar)
    # Everything that shapes the program; the data, priors, frame and keys
    # are its arguments, so a later fit with the same key runs it as it is.
    # The default optimiser by name: a key of plain values names the program on
    # disk too (dpgmm_ppl/infer/_stored_programs.py).
    optimizer_key = "default" if optimizer is DEFAULT_OPTIMIZER else optimizer
    program_key = (
        "map", density.program.key, optimizer_key, num_steps, history_every, objective,
        resolve_optimizer_chain_method(chain_method), bar.in_program,
    )
    template = density._replace(data=None)
    program = cached_program(
        program_key,
        lambda: chains_program(
            make_restart(template, optimizer, num_steps, history_every, bar, objective),
            chain_method,
        ),
    )
    keys = jax.random.split(rng_key, num_chains)
    (positions, losses, history, stats), timing = compile_and_run(
        program, (keys, density.data, density.params), bar
    )

    steps = history_steps(num_steps, history_every)
    # The data's spread as the frame records it (a constant column's
    # magnitude, or 1, stands in for its zero spread): no pass over the data.
    data_spread = density.frame.unit * UNITS_PER_SPREAD
    _warn_on_failure(losses, history, steps, data_spread)
    _warn_if_crowded(history["weights"][:, -1], stats["objective"], density.num_components)
    add_draw_axis = lambda tree: jax.tree_util.tree_map(lambda leaf: leaf[:, None], tree)
    return BackendOutput(
        positions=add_draw_axis(positions),
        sample_stats={**add_draw_axis(stats), "loss": losses[:, -1:]},
        losses=losses,
        history=history,
        history_steps=steps,
        timing=timing,
    )


class MAPState(NamedTuple):
    """What the next MAP step needs."""

    position: dict
    opt_state: Any


class MAPInfo(NamedTuple):
    """Diagnostics of one MAP step: the loss before it, and whether it was taken."""

    loss: Any
    is_finite: Any


def init(
    start: jax.Array | dict[str, Any], density: LogDensity, optimizer: optax.GradientTransformation
) -> MAPState:
    """The state of one MAP restart, before its first step.

    Parameters
    ----------
    start : PRNGKey or dict
        A key, which seeds k-means++ as :func:`run_map` seeds restart ``i``
        from ``jax.random.split(rng_key, num_chains)[i]``, or an
        unconstrained position.
    density : LogDensity
        From :func:`~dpgmm_ppl.density.build_log_density`.
    optimizer : optax.GradientTransformation
        Any optax transformation (:func:`run_map`'s default is ``optax.adam(0.05)``).

    Returns
    -------
    MAPState
    """
    position = start if isinstance(start, dict) else density.seed_position(start, density.data)
    return MAPState(position, optimizer.init(position))


def step(
    state: MAPState,
    density: LogDensity,
    optimizer: optax.GradientTransformation,
    *,
    objective: str = "occam",
) -> tuple[MAPState, MAPInfo]:
    """One optimiser step on minus ``objective``, a pure function of ``state``.

    The step of :func:`run_map`'s loop; ``run_map`` also offers each restart
    its components in order of weight every ``history_every`` steps (but with
    ``objective="constrained"``), which this step does not. A step whose
    loss or gradient is not finite leaves the state as it was.

    Parameters
    ----------
    state : MAPState
        From :func:`init` or an earlier step.
    density : LogDensity
        The density :func:`init` was given; its ``data`` are the data.
    optimizer : optax.GradientTransformation
        The one :func:`init` was given.
    objective : {"occam", "unconstrained", "constrained"}
        As for :func:`run_map`.

    Returns
    -------
    (MAPState, MAPInfo)

    Examples
    --------
    >>> import jax, numpy as np, optax
    >>> from dpgmm_ppl.density import build_log_density
    >>> x = np.concatenate([np.full(40, -5.0), np.full(60, 5.0)])
    >>> x += np.random.default_rng(0).normal(size=100)
    >>> density = build_log_density(x, num_components=3, parameterization="noncentered")
    >>> optimizer = optax.adam(0.05)
    >>> state = init(jax.random.PRNGKey(0), density, optimizer)
    >>> one_step = jax.jit(lambda state: step(state, density, optimizer))
    >>> losses = []
    >>> for _ in range(500):
    ...     state, info = one_step(state)
    ...     losses.append(float(info.loss))
    >>> bool(losses[-1] < losses[0])
    True
    >>> values = density.constrain_fn(state.position)
    >>> sorted(np.round(values["loc"][values["weights"] > 0.2]).tolist())
    [-5.0, 5.0]
    """
    loss_fn = objective_fn(density, objective)
    position, opt_state, loss, is_finite = optimizer_step(loss_fn, optimizer)(
        state.position, state.opt_state, density.data
    )
    return MAPState(position, opt_state), MAPInfo(loss, is_finite)


def _validate(options):
    check_optimizer_options(options, example="optax.adam(0.05)")
    check_positive_int("num_steps", options["num_steps"])
    check_positive_int("history_every", options["history_every"])
    if not isinstance(options["objective"], str) or options["objective"] not in OBJECTIVES:
        raise ValueError(
            f"objective must be one of {OBJECTIVES}, got {options['objective']!r}"
        )
    check_parameterization(options["parameterization"])
    check_progress_bar(options["progress_bar"])


MAP = Backend(
    name="map",
    defaults={
        "optimizer": None,
        "num_steps": 10_000,
        "history_every": 50,
        "chain_method": None,
        "objective": "occam",
        "parameterization": "noncentered",
        "progress_bar": False,
    },
    run=run_map,
    validate=_validate,
    kind="optimum",
    quick_options={"num_steps": 1000},
    description="posterior mode by gradient descent (Adam)",
)
