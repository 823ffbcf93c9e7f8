"""NUTS: the No-U-Turn sampler on the shared potential.

The sampler is NUTS with NumPyro's step-size and mass-matrix adaptation
around trees of the package's own (:mod:`~dpgmm_ppl.infer._nuts_tree`),
whose leapfrog steps halve where the Hamiltonian changes by more than
``energy_tolerance`` within one step, on the shared
:attr:`~dpgmm_ppl.density.LogDensity.potential_fn` rather than the model
traced again: the density NUTS explores is, bit for bit, the one MAP and SVI
evaluate. The warmup and the draws of every chain run as one compiled
program that takes the data and the priors as arguments
(:mod:`dpgmm_ppl.infer._nuts_program`), so a later fit of data of the same
shape compiles nothing. :func:`init` and :func:`step` drive the same kernel
one transition at a time.

Starting points (:mod:`dpgmm_ppl.infer._nuts_starts`). Several k-means++
seedings per chain, over fewer and fewer components, descend the potential;
the lowest are kept, in order of decreasing weight. The prior is
not exchangeable, so each order of the components is a mode of its own that
NUTS does not leave; chains started in one order let R-hat measure mixing
within one labelling, and descended starts spare the first warmup windows
the walk to the typical set.

The chart (:mod:`dpgmm_ppl.infer._nuts_chart`). By default every stick is
non-centred (:class:`~dpgmm_ppl.reparam.NonCenteredStickBreaking`), the
chart in which simulation-based calibration of ``alpha`` passes. With
``centered_sticks="auto"`` (the default from :data:`MANY_POINTS` points on)
the sticks the data pin down are centred after a scouting warmup, which
removes the ridge they form with ``alpha`` when there are many points and
many components. ``docs/backends.md`` and ``benchmarks/README.md`` give the
measurements behind these choices and the defaults (:func:`size_defaults`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import jax
import numpy as np
from numpyro.infer.hmc import HMCState

from dpgmm_ppl.density import rechart
from dpgmm_ppl.infer._common import CompileTimer
from dpgmm_ppl.infer._nuts_chart import centered_stick_count, plan_scouting, scout
from dpgmm_ppl.infer._nuts_kernel import DEFAULT_ENERGY_TOLERANCE, init_state, make_transition
from dpgmm_ppl.infer._nuts_options import (
    MANY_POINTS,
    check_split_merge,
    resolve_dense_mass,
    size_defaults,
    validate_options,
    warn_of_centered_chart,
    warn_on_depth_bound,
    warn_on_divergences,
)
from dpgmm_ppl.infer._nuts_options import (
    resolve_chain_method as _resolve_chain_method,
)
from dpgmm_ppl.infer._nuts_program import run_sampler, sample_stats_of
from dpgmm_ppl.infer._nuts_starts import hessian_inverse_mass, init_positions, unconstrain_all
from dpgmm_ppl.infer._progress import StepBar
from dpgmm_ppl.infer.base import Backend, BackendOutput, check_chart

if TYPE_CHECKING:
    from dpgmm_ppl.density import LogDensity

__all__ = [
    "MANY_POINTS",
    "NUTS",
    "NUTSInfo",
    "centered_stick_count",
    "init",
    "resolve_dense_mass",
    "run_nuts",
    "size_defaults",
    "step",
]

def run_nuts(
    rng_key: jax.Array,
    density: LogDensity,
    *,
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    target_accept_prob: float | None,
    dense_mass: bool | str,
    max_tree_depth: int,
    chain_method: str | None,
    num_init_steps: int,
    parameterization: str,
    init_inverse_mass: str = "identity",
    max_warmup_tree_depth: int | None = None,
    centered_sticks: str | int | None = 0,
    split_merge: int = 0,
    energy_tolerance: float | None = DEFAULT_ENERGY_TOLERANCE,
    progress_bar: bool = False,
) -> BackendOutput:
    """Run ``num_chains`` NUTS chains on the shared log-density.

    Parameters
    ----------
    rng_key : PRNGKey
        Split into the starts' key and the sampler's; the same key gives
        bit-identical draws (same ``chain_method``, platform and JAX version).
    density : LogDensity
        The shared log-density; NUTS evaluates ``density.potential_fn`` with
        ``density.data`` bound in.
    num_chains : int
        Independent chains, each from its own start.
    num_warmup : int
        Adaptation steps (step size by dual averaging, mass matrix by
        windowed adaptation), discarded. ``0`` skips adaptation: the step
        size stays NumPyro's starting value of 1 and the mass matrix the
        identity, which is only fit for checks.
    num_samples : int
        Draws kept per chain.
    target_accept_prob : float in (0, 1) or None
        Target of the step-size adaptation; higher means smaller steps and
        fewer divergences. ``None``: by the number of points
        (:func:`size_defaults`).
    dense_mass : bool or "auto"
        Adapt a dense mass matrix (all correlations between the
        unconstrained coordinates) instead of a diagonal one. ``"auto"``: a
        diagonal one from :data:`MANY_POINTS` points on; below, a dense one
        where the warmup can estimate it (:func:`resolve_dense_mass`).
    max_tree_depth : int
        At most ``2**max_tree_depth - 1`` leapfrog steps per draw.
    max_warmup_tree_depth : int, optional
        The same bound during warmup only (NumPyro's ``max_tree_depth``
        pair), where the first windows, before the mass matrix is adapted,
        run to the maximum depth. ``None``: ``max_tree_depth`` below
        :data:`MANY_POINTS` points, at most 8 from there on.
    init_inverse_mass : {"identity", "hessian"}
        The inverse mass matrix the warmup starts from: NumPyro's identity,
        or one over the diagonal of the potential's Hessian at the starts
        (floored at 1, the median over the chains), so that the first
        windows move in units of each coordinate's curvature.
    chain_method : {"parallel", "sequential", "vectorized", None}
        How the chains share the hardware (as for :class:`numpyro.infer.MCMC`).
        ``None``: one chain per device when there are enough devices, else
        one after another on the CPU and in lockstep on an accelerator or
        with sharded data (:func:`~dpgmm_ppl.infer._nuts_options.resolve_chain_method`).
        On a CPU, JAX sees one device unless told before it starts
        (``numpyro.set_host_device_count(4)``).
    num_init_steps : int
        Adam steps down the potential from each k-means++ seeding before
        sampling (see the module notes); ``0`` starts from the seedings.
    parameterization : {"centered", "noncentered"}
        The chart of the unconstrained space; ``density`` must have been
        built in it (``ValueError`` otherwise).
    centered_sticks : "auto", int or None
        With ``parameterization="noncentered"``: how many of the first
        sticks keep NumPyro's centred chart (:func:`~dpgmm_ppl.density.rechart`).
        ``None``: 0 below :data:`MANY_POINTS` points, ``"auto"`` from there
        on. ``"auto"``: chosen after the first half of the warmup, which runs
        fully non-centred with a diagonal mass matrix that is not kept (see
        the module notes and :func:`centered_stick_count`); ``lp`` is then
        the log density in the chosen chart. Not allowed with
        ``parameterization="centered"`` (every stick is centred there).
    split_merge : int
        Split-merge proposals after each NUTS transition, warmup included
        (:mod:`~dpgmm_ppl.infer._nuts_moves`): Metropolis-Hastings jumps
        that take a small component into its neighbour and leave it empty,
        or the reverse, which NUTS alone seldom does. ``0``: none. Needs
        ``parameterization="noncentered"`` and a diagonal (or 1-d) covariance.
    energy_tolerance : float or None
        A step of the tree over which the Hamiltonian varies by more than
        this is taken as 2, 4, .. 32 shorter leapfrog steps, and kept only
        if the same rule run backwards agrees (:mod:`~dpgmm_ppl.infer._nuts_tree`);
        a tree that meets a step that fails is stopped and the draw counted
        in ``irreversible``. ``None``: plain leapfrog steps, as NumPyro's NUTS.
    progress_bar : bool
        Show a tqdm bar on stderr over the iterations of every chain (one
        more for the scouting warmup), advanced from inside the compiled
        loop; the draws are the same as without it.

    Returns
    -------
    BackendOutput
        ``positions`` of shape ``(num_chains, num_samples, ...)``;
        ``sample_stats`` ``lp`` (minus the potential energy), ``diverging``,
        ``irreversible``, ``acceptance_rate``, ``n_steps`` (leaves of the
        tree), ``n_leapfrog`` (leapfrog steps, halved ones included), ``tree_depth``,
        ``reached_max_treedepth``, ``step_size`` and ``energy``; no
        ``losses`` or ``history``. ``timing``: the seconds JAX spent tracing
        and compiling during the run (:mod:`jax.monitoring`; 0 when an
        earlier fit of the same shape compiled every program) and the rest
        of the run's wall time.

    Warns
    -----
    RuntimeWarning
        Once, with the count, if any draw after warmup diverged; once, with
        the chains, if a chain reached ``max_tree_depth`` in more than
        :data:`~dpgmm_ppl.diagnostics.MAX_TREEDEPTH_SHARE` of its draws.
    UserWarning
        With ``parameterization="centered"``, which fails simulation-based
        calibration (``benchmarks/README.md``).
    """
    check_chart(density, parameterization)
    if parameterization == "centered":
        warn_of_centered_chart()
    settings, target_accept_prob, (is_scouting, scout_warmup, centered_sticks) = _resolve(
        density, parameterization, num_chains, num_warmup, target_accept_prob=target_accept_prob,
        dense_mass=dense_mass, max_tree_depth=max_tree_depth,
        max_warmup_tree_depth=max_warmup_tree_depth, centered_sticks=centered_sticks,
        chain_method=chain_method, split_merge=split_merge, energy_tolerance=energy_tolerance,
    )
    init_key, sample_key = jax.random.split(rng_key)
    if parameterization == "noncentered" and not is_scouting:
        if min(centered_sticks, density.num_components - 1) != density.num_centered_sticks:
            density = rechart(density, cast(int, centered_sticks))  # resolved to a count
    start = time.perf_counter()
    with CompileTimer() as timer:
        starts = init_positions(init_key, density, num_chains, num_init_steps)
        if is_scouting:
            scout_key, sample_key = jax.random.split(sample_key)
            # A diagonal mass there: its windows are too short for a dense
            # estimate, and what it adapts is not kept.
            bar = StepBar("NUTS (scouting)", num_chains * scout_warmup, enabled=progress_bar)
            density, starts = _scout_chart(
                scout_key, density, starts, scout_warmup,
                bar=bar, **{**settings, "dense_mass": False},
            )
            num_warmup -= scout_warmup
        inverse_mass = (hessian_inverse_mass(density, starts, settings["dense_mass"])
                        if init_inverse_mass == "hessian" and num_warmup else None)
        bar = StepBar("NUTS", num_chains * (num_warmup + num_samples), enabled=progress_bar)
        _, positions, fields, _ = run_sampler(
            sample_key, density, starts, inverse_mass, bar=bar,
            num_warmup=num_warmup, num_samples=num_samples, **settings,
        )
    total_seconds = time.perf_counter() - start
    sample_stats = sample_stats_of(jax.tree_util.tree_map(np.asarray, fields), max_tree_depth)
    warn_on_divergences(sample_stats["diverging"], target_accept_prob, settings["dense_mass"])
    warn_on_depth_bound(sample_stats["reached_max_treedepth"], max_tree_depth)
    return BackendOutput(
        positions=positions, sample_stats=sample_stats, losses=None, history=None,
        history_steps=None, density=density,
        timing={"compile_seconds": timer.seconds, "run_seconds": total_seconds - timer.seconds},
    )


def _resolve(density, parameterization, num_chains, num_warmup, *, target_accept_prob,
             dense_mass, max_tree_depth, max_warmup_tree_depth, centered_sticks, chain_method,
             split_merge, energy_tolerance):
    """``(settings, target_accept_prob, scouting)``: the sampler's settings, every
    default resolved, and the plan of the scouting (:func:`plan_scouting`)."""
    target_accept_prob, dense_mass, max_warmup_tree_depth, centered_sticks = size_defaults(
        density.num_data, parameterization, target_accept_prob=target_accept_prob,
        dense_mass=dense_mass, max_tree_depth=max_tree_depth,
        max_warmup_tree_depth=max_warmup_tree_depth, centered_sticks=centered_sticks,
    )
    scouting = plan_scouting(density.num_components, parameterization, centered_sticks, num_warmup)
    # The mass matrix is adapted in the warmup after the scouting one.
    dense_mass = resolve_dense_mass(dense_mass, num_warmup - scouting[1], density.init_position)
    if max_warmup_tree_depth is not None:
        max_tree_depth = (max_warmup_tree_depth, max_tree_depth)
    settings = {
        "target_accept_prob": float(target_accept_prob),
        "dense_mass": dense_mass,
        "max_tree_depth": max_tree_depth,
        # Resolved (and refused, if it conflicts with the data) before any work.
        "chain_method": _resolve_chain_method(chain_method, num_chains, density.data),
        "split_merge": check_split_merge(split_merge, density, parameterization),
        "energy_tolerance": None if energy_tolerance is None else float(energy_tolerance),
    }
    return settings, target_accept_prob, scouting


def _scout_chart(rng_key, density, starts, num_warmup, **settings):
    """The density in the chart the scouting chose (:func:`~dpgmm_ppl.density.rechart`)
    and each chain's last scouting position in it, components in order of
    decreasing weight."""
    values, count = scout(rng_key, density, starts, num_warmup, **settings)
    charted = rechart(density, count)
    return charted, unconstrain_all(charted, values)


class NUTSInfo(NamedTuple):
    """Diagnostics of one NUTS transition, in ArviZ's names."""

    lp: Any
    acceptance_rate: Any
    n_steps: Any
    step_size: Any
    energy: Any
    diverging: Any
    irreversible: Any
    n_leapfrog: Any


def _kernel_settings(density, num_warmup, target_accept_prob, dense_mass):
    # Bound as run_nuts's program binds it, so that the same loop rounds the same.
    bound = density._replace(data=None).bind(density.params)

    def potential_fn(position):
        return bound.potential_fn(position, density.data)

    return potential_fn, dict(num_warmup=num_warmup, target_accept_prob=target_accept_prob,
                              dense_mass=dense_mass)


def init(
    rng_key: jax.Array,
    density: LogDensity,
    position: dict[str, Any] | None = None,
    *,
    num_warmup: int,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int | tuple[int, int] = 10,
    inverse_mass: jax.Array | None = None,
) -> HMCState:
    """The state of the NUTS kernel at ``position``, before its warmup.

    Parameters
    ----------
    rng_key : PRNGKey
        The chain's key, carried in the state.
    density : LogDensity
        From :func:`~dpgmm_ppl.density.build_log_density`; the kernel moves
        on its ``potential_fn`` with its data.
    position : dict, optional
        An unconstrained start (``density.seed_position(key, density.data)``
        gives a k-means++ one); ``density.init_position`` by default.
    num_warmup : int
        Transitions that adapt the step size and the mass matrix; the
        transitions after them do not.
    target_accept_prob, dense_mass, max_tree_depth
        As for :class:`numpyro.infer.NUTS` (``max_tree_depth`` may be the
        pair ``(warmup, sampling)``). :func:`step` must be given the same.
    inverse_mass : Array, optional
        The starting inverse mass matrix; the identity by default.

    Returns
    -------
    numpyro.infer.hmc.HMCState
        ``z`` is the position.
    """
    start = density.init_position if position is None else position
    potential_fn, settings = _kernel_settings(density, num_warmup, target_accept_prob,
                                              dense_mass)
    return init_state(potential_fn, start, rng_key, inverse_mass=inverse_mass, **settings)


def step(
    state: HMCState,
    density: LogDensity,
    *,
    num_warmup: int,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int | tuple[int, int] = 10,
    energy_tolerance: float | None = DEFAULT_ENERGY_TOLERANCE,
) -> tuple[HMCState, NUTSInfo]:
    """One NUTS transition from ``state``, adapting while ``state.i < num_warmup``.

    A pure function of the state (whose key it splits): the transition that
    :func:`run_nuts` repeats inside its compiled loop. Jit it
    (``jax.jit(lambda state: step(state, density, ...))``) to run a chain by
    hand. In a loop compiled as the sampler's is, the same key, start and
    settings give the sampler's draws bit for bit; one call per step rounds
    differently, and a chain soon parts from the sampler's (the dynamics are
    chaotic) while sampling the same posterior.

    Parameters
    ----------
    state : numpyro.infer.hmc.HMCState
        From :func:`init` or an earlier step.
    density : LogDensity
        The density :func:`init` was given.
    num_warmup, target_accept_prob, dense_mass, max_tree_depth
        As given to :func:`init`.
    energy_tolerance : float or None
        As for :func:`run_nuts`.

    Returns
    -------
    (HMCState, NUTSInfo)
        The next state (``state.z`` the new position) and its diagnostics.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from dpgmm_ppl.density import build_log_density
    >>> x = np.random.default_rng(0).normal(size=200)
    >>> density = build_log_density(x - x.mean() + 3.0, num_components=1,
    ...                             parameterization="noncentered")
    >>> settings = dict(num_warmup=100, max_tree_depth=5)
    >>> state = init(jax.random.PRNGKey(0), density, **settings)
    >>> one_step = jax.jit(lambda state: step(state, density, **settings))
    >>> draws = []
    >>> for i in range(300):
    ...     state, info = one_step(state)
    ...     draws.append(state.z)
    >>> draws = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves[100:]), *draws)
    >>> loc = jax.vmap(density.constrain_fn)(draws)["loc"]
    >>> round(float(loc.mean()), 1)  # the posterior mean: the data's mean, 3
    3.0
    """
    potential_fn, settings = _kernel_settings(density, num_warmup, target_accept_prob,
                                              dense_mass)
    transition = make_transition(potential_fn, max_tree_depth=max_tree_depth,
                                 energy_tolerance=energy_tolerance, **settings)
    state, tree = transition(state)
    info = NUTSInfo(
        lp=-state.potential_energy, acceptance_rate=state.accept_prob, n_steps=state.num_steps,
        step_size=state.adapt_state.step_size, energy=state.energy, diverging=state.diverging,
        irreversible=tree.irreversible, n_leapfrog=tree.num_leapfrog,
    )
    return state, info


def _validate(options):
    validate_options(options, default_centered_sticks=NUTS.defaults["centered_sticks"])


NUTS = Backend(
    name="nuts",
    defaults={
        "num_warmup": 500,
        "num_samples": 500,
        "target_accept_prob": None,
        "dense_mass": "auto",
        "max_tree_depth": 10,
        "max_warmup_tree_depth": None,
        "init_inverse_mass": "identity",
        "chain_method": None,
        "num_init_steps": 1000,
        "parameterization": "noncentered",
        "centered_sticks": None,
        "split_merge": 0,
        "energy_tolerance": DEFAULT_ENERGY_TOLERANCE,
        "progress_bar": False,
    },
    run=run_nuts,
    validate=_validate,
    kind="sampler",
    quick_options={"num_warmup": 100, "num_samples": 100, "max_tree_depth": 6,
                   "num_init_steps": 300},
    description="posterior draws by NUTS",
)
