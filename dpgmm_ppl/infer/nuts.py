"""NUTS: NumPyro's No-U-Turn sampler on the shared potential.

The sampler is NumPyro's own NUTS kernel, with its step-size and
mass-matrix adaptation (:func:`numpyro.infer.hmc.hmc`, the functional form
of :class:`numpyro.infer.NUTS`), on the shared
:attr:`~dpgmm_ppl.density.LogDensity.potential_fn` rather than the model
traced again: the density NUTS explores is, bit for bit, the one MAP and
SVI evaluate. It is the log joint of the unconstrained position, the
log-Jacobian of NumPyro's transforms included. The warmup and the draws of
every chain run as one compiled program that takes the data and the priors
as arguments (:mod:`dpgmm_ppl.infer._nuts_program`), so a later fit of data
of the same shape compiles nothing.

Starting points. By default (``num_init_steps=1000``) four k-means++
seedings per chain (:func:`~dpgmm_ppl.initialization.kmeanspp_init`, as for
the MAP restarts) each run that many Adam steps down the potential; the
``num_chains`` lowest are kept and their components put in order of
decreasing weight. Measured on the seed data with four components, 4 chains:
from bare k-means++ starts one chain ended in another order of the
components (``alpha`` R-hat 1.33), and the first warmup windows, far from
the typical set with a unit mass matrix, took most of the run (about 190
leapfrog steps a draw against 7-10 after adaptation); from one seeding per
chain descended 500 steps, one chain stayed in a local mode 60 nats below the
others (two components on one cluster). The
stick-breaking prior is not exchangeable, so each order of the components is
a separate mode with its own ``alpha``; NUTS does not move between them, and
putting every chain in the same order makes R-hat measure mixing within one
labelling rather than report the arbitrary order of the starts.
``num_init_steps=0`` starts each chain from one k-means++ seeding as it is.

The chart. By default (``parameterization="noncentered"``) NUTS moves every
stick in the non-centred chart of
:class:`~dpgmm_ppl.reparam.NonCenteredStickBreaking`; with
``centered_sticks="auto"`` it moves each stick in the chart that suits it.
``"auto"`` pays where there are many points and many components (the
seed-data table below); on small data sets it costs a second compilation
and gained nothing measurable, so it is not the default (see "Defaults").

- A spare component's stick is non-centred: its coordinate ``log e_k`` has
  a prior that does not depend on ``alpha``. Simulation-based calibration
  (``benchmarks/sbc.py``: 200 replications of 50 points, 5 components)
  found the ranks of ``alpha`` non-uniform in NumPyro's own chart of every
  stick (chi-square p = 0.007; the misses were the replications with a small
  true ``alpha``, whose spare sticks sit in a funnel) and uniform with every
  stick non-centred (p = 0.38).
- A stick the data pin down is centred (``logit v_k``, a narrow coordinate
  of its own). Non-centred, it lies on the line ``log e_k = log alpha + c``,
  which ties ``alpha`` to every occupied component. On the seed data at
  K = 25 (one chain, 500 + 500, diagonal mass, target 0.8, warmup trees of
  depth 8) that line held the step size near 0.017: about 500 leapfrog
  steps a draw, 217 s. With the occupied sticks centred, the step size was
  0.076-0.107 and 36-63 steps a draw (the table below).

Which components the data occupy is known only once a chain has found
them; the starts, descended or not, spread the weight over many components.
So the first half of the warmup runs with every stick non-centred. Then
each chain's components are put in order of decreasing weight (as the
starts were), and the leading sticks with at least 20 points and 1 % of
the data in the components after them are centred
(:func:`centered_stick_count`); the rest of the warmup and the sampling run
in that chart (:func:`~dpgmm_ppl.density.rechart`). A stick centred in
error is the costly mistake: if its component empties later, its
coordinate is a funnel. Measured on the seed data at K = 25 (keys 0-3):

- With a threshold of 5 points, key 3 centred the stick of a component
  that held 0.2 % of the weight; it then moved in and out of a small
  cluster (``lp`` ESS 27, 14 divergences, against 109 and 3 at 20 points).
- After a first fifth of the warmup, key 2's chain still had a cluster
  split over three components and weights of 1-2 % on two more, which
  later emptied: with 20 points it centred 7 sticks (step size 0.013, 330
  steps a draw, ``alpha`` ESS 21), with 1 % of the data 6 (257 steps,
  ``alpha`` ESS 57). After the first half, with 20 points it centred 5
  (15 divergences), with 1 % of the data 4: 62 steps a draw, ``alpha``
  ESS 184, ``lp`` ESS 147. The four keys then centred 3 to 5 sticks, and
  ESS/s varied little between them (the table below).

With several chains the count is the smallest over them
(:func:`centered_stick_count` gives the measurement).

Measured on the seed data at K = 25 (``benchmarks/nuts_ess.py --dense-mass
false --target-accept-prob 0.8 --max-warmup-tree-depth 8 --centered-sticks
auto``, one chain of
500 + 500 pinned to one core, float32), ours against a hand-written NumPyro
model under stock NUTS in the same process:

| rng key | wall s | steps/draw | sticks centred | ESS alpha | ESS lp | baseline lp/s | ratio alpha/s | ratio lp/s |
|--|--:|--:|--:|--:|--:|--:|--:|--:|
| 0 | 114.7 | 48 | 3 | 240 | 115 | 0.085 | 56.9 | 11.9 |
| 1 | 125.8 | 59 | 5 | 268 | 123 | 0.275 | 10.5 | 3.5 |
| 2 | 129.6 | 63 | 4 | 184 | 147 | 0.146 | 11.1 | 7.8 |
| 3 | 107.7 | 36 | 3 | 259 | 107 | 0.098 | 27.0 | 10.1 |

Divergences: 1, 8, 0 and 2. The baseline's figures move a lot with the
key (``lp`` ESS 23 to 82), hence several keys. With ``"auto"`` but this
module's default mass and target (dense, 0.9) the same fit took more than 6
minutes for keys 0 and 1. Before the partial centring
the same settings gave 217 s, about 500 steps a draw and an ``lp`` ESS of
115 (key 0, unpinned). Spare components remain the hard part: one whose
weight is small has a location and scale that the data pin down only once
its weight is not, a funnel no chart of the sticks removes. The posterior
there keeps about 0.2 % of the weight on a fifth component and 0.05 % on
a sixth.

Defaults. The small-data setting (a dense mass matrix where the warmup allows,
target 0.9, no bound on the warmup's trees, every stick non-centred) was
compared with the setting above for many components (``dense_mass=False,
target_accept_prob=0.8, max_warmup_tree_depth=8, centered_sticks="auto"``)
on the data of the examples, keys 0 and 1, one core each (jax 0.10.2):

| data | K | chains x (warmup + draws) | setting | wall s | steps/draw | ``lp`` ESS/s | ``alpha`` ESS/s |
|--|--:|--|--|--:|--:|--:|--:|
| galaxies (82 points) | 20 | 4 x (500 + 500) | defaults | 52, 48 | 249, 260 | 3.3, 11.6 | 4.5, 8.1 |
| galaxies | 20 | 4 x (500 + 500) | many-component | 52, 47 | 124, 97 | 7.2, 2.7 | 3.1, 1.8 |
| Old Faithful (272 points, full covariance) | 10 | 2 x (300 + 300) | defaults | 55, 47 | 648, 512 | 1.17, 2.68 | 4.0, 5.5 |
| Old Faithful | 10 | 2 x (300 + 300) | many-component | 46, 42 | 50, 156 | 1.65, 0.41 | 3.1, 4.2 |

On these the many-component setting takes shorter trajectories but
mixes no better per second (and key 1 on Old Faithful left the chains'
``lp`` at R-hat 1.11, against 1.01 with the defaults): the wall time is mostly compilation (a second
program for the scouting warmup) and the shorter trajectories give fewer
effective draws. So the defaults depend on the number of points
(:func:`size_defaults`): the small-data setting below 2,000 points, the
setting for many components from there on, where the seed data showed it
(the table before).
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np
from numpyro.infer.hmc_util import build_adaptation_schedule

from dpgmm_ppl._validation import check_parameterization, check_positive_int
from dpgmm_ppl.density import rechart
from dpgmm_ppl.infer._common import CompileTimer
from dpgmm_ppl.infer._nuts_program import run_sampler
from dpgmm_ppl.infer._nuts_starts import (
    hessian_inverse_mass,
    init_positions,
    sorted_values,
    unconstrain_all,
)
from dpgmm_ppl.infer._progress import StepBar, check_progress_bar
from dpgmm_ppl.infer.base import Backend, BackendOutput, check_chart

__all__ = ["NUTS", "centered_stick_count", "resolve_dense_mass", "run_nuts", "size_defaults"]

#: Fields of the kernel state recorded per draw, and their ArviZ names.
_STAT_NAMES = {
    "potential_energy": "lp",
    "accept_prob": "acceptance_rate",
    "num_steps": "n_steps",
    "adapt_state.step_size": "step_size",
    "energy": "energy",
}

_CHAIN_METHODS = ("parallel", "sequential", "vectorized")

#: Starting inverse mass matrices of the warmup (``init_inverse_mass``).
_INIT_INVERSE_MASSES = ("identity", "hessian")

#: The first 1/this of the warmup runs fully non-centred to find the occupied components.
_SCOUT_FRACTION = 2

#: Points, and share of the data, that the later components must hold for a
#: stick to be centred (``centered_sticks="auto"``).
_CENTERED_STICK_MIN_POINTS = 20
_CENTERED_STICK_MIN_FRACTION = 0.01



def _resolve_chain_method(chain_method, num_chains, data=None):
    """Chains across devices when there are enough, unless the data already are.

    Otherwise one chain after another on the CPU, where chains in lockstep
    under ``vmap`` wait for the deepest tree of them all (measured: 4 chains,
    2,000 points, 5 components, 200 + 200 iterations, 30 s one after another
    against 69 s in lockstep), and in lockstep on an accelerator.
    """
    sharded = isinstance(data, jax.Array) and len(data.sharding.device_set) > 1
    if chain_method is None:
        if sharded:
            return "vectorized"
        if jax.local_device_count() >= num_chains:
            return "parallel"
        return "sequential" if jax.default_backend() == "cpu" else "vectorized"
    if chain_method == "parallel" and sharded:
        raise ValueError(
            "chain_method='parallel' puts one chain on each device, but the data are "
            "sharded across devices (mesh=...); use chain_method='vectorized' or "
            "'sequential' with a mesh, or no mesh to spread the chains"
        )
    return chain_method


def _sample_stats(extra_fields):
    stats = {name: extra_fields[field] for field, name in _STAT_NAMES.items()}
    stats["lp"] = -stats["lp"]
    stats["diverging"] = extra_fields["diverging"]
    # NumPyro does not record the depth. A tree of depth d that runs to the
    # end takes 2**d - 1 leapfrog steps, so this is exact for those (ArviZ's
    # own NumPyro converter uses the same formula); a tree stopped early by
    # a U-turn or a divergence inside a subtree reports the depth it reached.
    n_steps = np.maximum(np.asarray(stats["n_steps"]), 1)
    stats["tree_depth"] = np.floor(np.log2(n_steps)).astype(np.int64) + 1
    return stats


def _warn_on_divergences(diverging, target_accept_prob, dense_mass):
    count = int(np.sum(diverging))
    if not count:
        return
    per_chain = np.sum(diverging, axis=1).tolist()
    advice = [f"raise target_accept_prob (now {target_accept_prob})"]
    if not dense_mass:
        advice.append("set dense_mass=True")
    advice += [
        "use fewer num_components",
        "or reparameterise (for example, a stronger prior on the scales)",
    ]
    warnings.warn(
        f"NUTS: {count} divergent transition(s) after warmup "
        f"(per chain: {per_chain}) out of {diverging.size} draws; the posterior "
        "estimates may be biased. Try: " + ", ".join(advice) + ".",
        RuntimeWarning,
        stacklevel=4,
    )


#: From this many points on, NUTS's defaults are those for many points and
#: many components (:func:`size_defaults`).
MANY_POINTS = 2_000


def size_defaults(num_data, parameterization, *, target_accept_prob, dense_mass,
                  max_tree_depth, max_warmup_tree_depth, centered_sticks):
    """The options left at their defaults, set by the number of points.

    Below :data:`MANY_POINTS` points: target acceptance 0.9, the dense mass
    matrix where the warmup can estimate it (``dense_mass="auto"``), warmup
    trees as deep as the sampling ones, every stick non-centred. From
    :data:`MANY_POINTS` on: target 0.8, a diagonal mass matrix, warmup trees
    of depth at most 8, and ``centered_sticks="auto"`` (the sticks the data
    pin down centred after a scouting warmup). Measured (module notes): the
    second setting took the seed data (19,000 points, K = 25) from about 500
    leapfrog steps a draw to 36-63 and ``alpha`` ESS per second from 0.17x
    to 10-57x the hand-written model's, while on the galaxies (82 points)
    and Old Faithful (272) it mixed no better per second than the first.
    The threshold lies between those sizes: 2,000 is where 1 % of the data
    is the 20 points that ``centered_stick_count`` asks of a stick.

    Examples
    --------
    >>> options = dict(target_accept_prob=None, dense_mass="auto", max_tree_depth=10,
    ...                max_warmup_tree_depth=None, centered_sticks=None)
    >>> size_defaults(82, "noncentered", **options)
    (0.9, 'auto', None, 0)
    >>> size_defaults(19_000, "noncentered", **options)
    (0.8, False, 8, 'auto')
    >>> size_defaults(19_000, "noncentered", **{**options, "target_accept_prob": 0.95})
    (0.95, False, 8, 'auto')
    """
    many = num_data >= MANY_POINTS
    if target_accept_prob is None:
        target_accept_prob = 0.8 if many else 0.9
    if dense_mass == "auto" and many:
        dense_mass = False
    if max_warmup_tree_depth is None and many:
        max_warmup_tree_depth = min(8, max_tree_depth)
    if centered_sticks is None:
        centered_sticks = "auto" if many and parameterization == "noncentered" else 0
    return target_accept_prob, dense_mass, max_warmup_tree_depth, centered_sticks


def resolve_dense_mass(dense_mass, num_warmup, position):
    """``dense_mass`` as a bool: ``"auto"`` is dense when the warmup can estimate it.

    NumPyro adapts the mass matrix at the end of each middle window of its
    warmup schedule, from that window's draws. A dense estimate from no more
    draws than the position has coordinates is singular; NumPyro's shrinkage
    towards the identity keeps it invertible in exact arithmetic, but in
    float32 its inverse overflows and every transition diverges (measured:
    the galaxies at K = 200, 600 coordinates, 30 warmup draws, infinite
    energy in every draw). ``"auto"`` therefore adapts a dense matrix only
    when the longest middle window has more draws than coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> position = {"loc": np.zeros(75)}
    >>> resolve_dense_mass("auto", 500, position), resolve_dense_mass("auto", 30, position)
    (True, False)
    """
    if dense_mass != "auto":
        return bool(dense_mass)
    windows = build_adaptation_schedule(num_warmup)[1:-1]
    longest = max((window.end - window.start + 1 for window in windows), default=0)
    num_coordinates = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(position))
    return longest > num_coordinates


def run_nuts(
    rng_key,
    density,
    *,
    num_chains,
    num_warmup,
    num_samples,
    target_accept_prob,
    dense_mass,
    max_tree_depth,
    chain_method,
    num_init_steps,
    parameterization,
    init_inverse_mass="identity",
    max_warmup_tree_depth=None,
    centered_sticks=0,
    progress_bar=False,
):
    """Run ``num_chains`` NUTS chains on the shared log-density.

    Parameters
    ----------
    rng_key : PRNGKey
        Split into the key of the k-means++ starts and the key of the sampler;
        the same key gives bit-identical draws (for the same ``chain_method``,
        platform and JAX version).
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
        fewer divergences. ``None`` (the default): 0.9 below
        :data:`MANY_POINTS` points, 0.8 from there on (:func:`size_defaults`).
    dense_mass : bool or "auto"
        Adapt a dense mass matrix (all correlations between the
        unconstrained coordinates) instead of a diagonal one. ``"auto"``
        (the default): a diagonal one from :data:`MANY_POINTS` points on;
        below, a dense one when the longest window of NumPyro's warmup
        schedule holds more draws than the unconstrained space has
        coordinates, and a diagonal one otherwise (:func:`resolve_dense_mass`).
    max_tree_depth : int
        At most ``2**max_tree_depth - 1`` leapfrog steps per draw.
    max_warmup_tree_depth : int, optional
        The same bound during warmup only (NumPyro's ``max_tree_depth``
        pair); ``None`` (the default) is ``max_tree_depth`` below
        :data:`MANY_POINTS` points and at most 8 from there on. The first warmup windows,
        before the mass matrix is adapted, are the ones that run to the
        maximum depth: on the seed data at K = 25 (one chain, 500 + 500,
        diagonal mass, target 0.8, one key) a warmup depth of 8 cut the
        warmup from 122 s to 61 s, with the same trajectory length after it.
    init_inverse_mass : {"identity", "hessian"}
        The inverse mass matrix the warmup starts from. ``"identity"``:
        NumPyro's default. ``"hessian"``: one over the diagonal of the
        potential's Hessian at the chains' starts (floored at 1, the median
        over the chains), so that the first windows move in units of each
        coordinate's curvature. Measured on the seed data at K = 25 (one
        chain, 500 + 500, diagonal mass, target 0.8, warmup depth 8, one
        key): the same warmup cost either way (225 and 229 leapfrog steps
        per warmup iteration); after warmup the trajectories' length varied
        more between keys (250 to 900 steps a draw) than with the start.
    chain_method : {"parallel", "sequential", "vectorized", None}
        How the chains share the hardware (the choices of :class:`numpyro.infer.MCMC`).
        ``None`` picks ``"parallel"`` (one chain per device, under ``pmap``)
        when ``jax.local_device_count() >= num_chains``; otherwise
        ``"sequential"`` (one chain after another) on the CPU and
        ``"vectorized"`` (chains under ``vmap``, in lockstep) on an
        accelerator; and ``"vectorized"`` when the data are sharded across
        the devices (``mesh=``), which the chains then share (``"parallel"``
        with sharded data is an error). On a CPU, JAX sees a
        single device unless told before it starts, for example::

            import numpyro
            numpyro.set_host_device_count(4)  # before any JAX computation
            # or: XLA_FLAGS=--xla_force_host_platform_device_count=4

        On 2 CPU cores, 4 chains of 5 components on 2,000 seed points
        (200 + 200 iterations) ran in 30 s ``"sequential"`` and in 69 s
        ``"vectorized"``, whose lockstep trees all take the depth of the
        deepest; on the full seed data (4 components) 59 s against 78 s.
    num_init_steps : int
        Adam steps down the potential from each k-means++ seeding before
        sampling (see the module notes); ``0`` starts from the seedings.
    parameterization : {"centered", "noncentered"}
        The chart of the unconstrained space; ``density`` must have been
        built in it (``ValueError`` otherwise).
    centered_sticks : "auto", int or None
        With ``parameterization="noncentered"``: how many of the first
        sticks keep NumPyro's centred chart (:func:`~dpgmm_ppl.density.rechart`;
        the rest are non-centred). ``None`` (the default): 0 below
        :data:`MANY_POINTS` points, ``"auto"`` from there on. ``"auto"``: the first half of the warmup
        (at least one iteration, with a diagonal mass matrix that is not
        kept) runs with every stick non-centred; then each
        chain's components are put in order of decreasing weight and the
        sticks that the data pin down are centred
        (:func:`centered_stick_count`: at least 20 points and 1 % of the data
        in the components after the stick, the smallest count over the
        chains), and the rest of
        the warmup and the sampling run in that chart. ``lp`` is then the log
        density in that chart. Not allowed with ``parameterization="centered"``
        (every stick is centred there).
    progress_bar : bool
        Show a tqdm bar on stderr over the warmup and sampling iterations of
        every chain, advanced from inside the compiled loop; the draws are
        the same as without it. With ``centered_sticks="auto"`` the
        scouting warmup has a bar of its own.

    Returns
    -------
    BackendOutput
        ``positions`` of shape ``(num_chains, num_samples, ...)``;
        ``sample_stats`` ``lp`` (minus the potential energy), ``diverging``,
        ``acceptance_rate``, ``n_steps``, ``tree_depth``, ``step_size`` and
        ``energy``; no ``losses`` or ``history``. ``timing``:
        ``compile_seconds`` is the wall time JAX spent tracing, lowering and
        compiling during the run (measured through :mod:`jax.monitoring`;
        0 when every program was compiled by an earlier fit of the same
        shape), and ``run_seconds`` the rest of the run's wall time.

    Warns
    -----
    RuntimeWarning
        Once, with the count, if any draw after warmup diverged.
    UserWarning
        With ``parameterization="centered"``, which fails simulation-based
        calibration (``benchmarks/README.md``).
    """
    check_chart(density, parameterization)
    if parameterization == "centered":
        warnings.warn(
            "NUTS in the centred chart of the sticks (parameterization='centered') is kept "
            "for comparison: its draws of alpha are biased low when spare components are "
            "present (simulation-based calibration, benchmarks/sbc.py --charts: p < 0.0001 "
            "for alpha, the largest weight and the log-likelihood); the default "
            "parameterization='noncentered' passes.",
            UserWarning,
            stacklevel=4,
        )
    target_accept_prob, dense_mass, max_warmup_tree_depth, centered_sticks = size_defaults(
        density.num_data, parameterization, target_accept_prob=target_accept_prob,
        dense_mass=dense_mass, max_tree_depth=max_tree_depth,
        max_warmup_tree_depth=max_warmup_tree_depth, centered_sticks=centered_sticks,
    )
    scout = parameterization == "noncentered" and centered_sticks == "auto"
    if scout and density.num_components == 1:  # no sticks: one chart
        scout, centered_sticks = False, 0
    scout_warmup = max(1, num_warmup // _SCOUT_FRACTION) if scout and num_warmup else 0
    # The mass matrix is adapted in the warmup after the scouting one.
    dense_mass = resolve_dense_mass(dense_mass, num_warmup - scout_warmup, density.init_position)
    init_key, sample_key = jax.random.split(rng_key)
    if max_warmup_tree_depth is not None:
        max_tree_depth = (max_warmup_tree_depth, max_tree_depth)
    settings = {
        "target_accept_prob": float(target_accept_prob),
        "dense_mass": dense_mass,
        "max_tree_depth": max_tree_depth,
        # Resolved (and refused, if it conflicts with the data) before any work.
        "chain_method": _resolve_chain_method(chain_method, num_chains, density.data),
    }
    if parameterization == "noncentered" and not scout:
        if min(centered_sticks, density.num_components - 1) != density.num_centered_sticks:
            density = rechart(density, centered_sticks)
    start = time.perf_counter()
    with CompileTimer() as timer:
        init_params = init_positions(init_key, density, num_chains, num_init_steps)
        if scout:
            scout_key, sample_key = jax.random.split(sample_key)
            # A diagonal mass there: its windows are too short for a dense
            # estimate, and what it adapts is not kept.
            bar = StepBar("NUTS (scouting)", num_chains * scout_warmup, enabled=progress_bar)
            density, init_params = _scout_chart(
                scout_key, density, init_params, scout_warmup,
                bar=bar, **{**settings, "dense_mass": False},
            )
            num_warmup -= scout_warmup
        inverse_mass = None
        if init_inverse_mass == "hessian" and num_warmup:
            inverse_mass = hessian_inverse_mass(density, init_params, dense_mass)
        bar = StepBar("NUTS", num_chains * (num_warmup + num_samples), enabled=progress_bar)
        _, positions, fields, _ = run_sampler(
            sample_key, density, init_params, inverse_mass, bar=bar,
            num_warmup=num_warmup, num_samples=num_samples, **settings,
        )
    total_seconds = time.perf_counter() - start

    sample_stats = _sample_stats(jax.tree_util.tree_map(np.asarray, fields))
    _warn_on_divergences(sample_stats["diverging"], target_accept_prob, dense_mass)
    return BackendOutput(
        positions=positions,
        sample_stats=sample_stats,
        losses=None,
        history=None,
        history_steps=None,
        timing={
            "compile_seconds": timer.seconds,
            "run_seconds": total_seconds - timer.seconds,
        },
        density=density,
    )


def centered_stick_count(weights, num_data, min_points=_CENTERED_STICK_MIN_POINTS,
                         min_fraction=_CENTERED_STICK_MIN_FRACTION):
    """How many leading sticks the data pin down, from weights sorted in decreasing order.

    Stick ``k`` is counted when the components after it hold at least
    ``min_points`` of the ``num_data`` points, and at least ``min_fraction``
    of them (``num_data`` times the weight left after component ``k``): its
    fraction :math:`v_k` then has data on both sides and a posterior much
    narrower than its prior. The share guards large data sets, where a
    component holding a few dozen points early in the warmup is often one
    that empties later.

    Over several chains the count is the smallest: a stick is centred only
    where every chain has data after it. A chain that ends its scouting with
    a cluster split over a spare component would otherwise centre the spare's
    stick in all of them, and in the chains where that spare is empty its
    stick is the funnel the non-centred chart avoids. On two clusters
    (200 points, 4 components, 3 chains, jax 0.12, six keys) the largest
    count centred a spare's stick for three keys, which then had 1 to 3
    divergences and R-hat on ``lp`` up to 1.07; the others had none and at
    most 1.03.

    Parameters
    ----------
    weights : Float[Array, "chain K"]
        Each chain's weights, sorted in decreasing order.
    num_data : int
        Number of observations.
    min_points : float
        Points the later components must hold.
    min_fraction : float
        Share of the ``num_data`` points they must hold.

    Returns
    -------
    int
        The smallest count over the chains.

    Examples
    --------
    >>> import numpy as np
    >>> centered_stick_count(np.array([[0.6, 0.3, 0.0995, 0.0004, 0.0001]]), 10_000)
    2
    """
    weights = np.asarray(weights, dtype=np.float64)
    remaining = 1.0 - np.cumsum(weights, axis=-1)[..., :-1]
    threshold = max(min_points, min_fraction * num_data)
    counts = np.sum(num_data * remaining >= threshold, axis=-1)
    return int(np.min(counts))


def _scout_chart(rng_key, density, init_params, num_warmup, **settings):
    """Warm up in the non-centred chart, then centre the sticks the data pin down.

    Returns the density in the chosen chart (:func:`~dpgmm_ppl.density.rechart`)
    and each chain's last warmup position in it, components in order of
    decreasing weight. With no warmup, the starts decide.
    """
    ends = init_params
    if num_warmup:
        ends, _, _, _ = run_sampler(
            rng_key, density, init_params, None, num_warmup=num_warmup, num_samples=0,
            **settings,
        )
    values = sorted_values(density, ends)
    count = centered_stick_count(np.exp(np.asarray(values["log_weights"], np.float64)),
                                 density.num_data)
    charted = rechart(density, count)
    return charted, unconstrain_all(charted, values)


def _validate(options):
    check_positive_int("num_samples", options["num_samples"])
    check_positive_int("num_warmup", options["num_warmup"], minimum=0)
    check_positive_int("max_tree_depth", options["max_tree_depth"])
    if options["max_warmup_tree_depth"] is not None:
        check_positive_int("max_warmup_tree_depth", options["max_warmup_tree_depth"])
    if options["init_inverse_mass"] not in _INIT_INVERSE_MASSES:
        raise ValueError(
            f"init_inverse_mass must be one of {_INIT_INVERSE_MASSES}, "
            f"got {options['init_inverse_mass']!r}"
        )
    check_positive_int("num_init_steps", options["num_init_steps"], minimum=0)
    target = options["target_accept_prob"]
    if target is not None and (
        isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, float, np.floating))
    ):
        raise TypeError(
            f"target_accept_prob must be None or a float in (0, 1), got {target!r} "
            f"of type {type(target).__name__}"
        )
    if target is not None and not 0.0 < target < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target}")
    if not (isinstance(options["dense_mass"], (bool, np.bool_)) or options["dense_mass"] == "auto"):
        raise TypeError(
            f"dense_mass must be True, False or 'auto', got {options['dense_mass']!r}"
        )
    check_parameterization(options["parameterization"])
    centered_sticks = options["centered_sticks"]
    # The default is valid in either chart, whatever it is: it must not make
    # parameterization="centered" fail on its own.
    default = NUTS.defaults["centered_sticks"]
    if not (type(centered_sticks) is type(default) and centered_sticks == default):
        if isinstance(centered_sticks, str) and centered_sticks != "auto":
            raise ValueError(
                f"centered_sticks must be 'auto' or an integer >= 0, got {centered_sticks!r}"
            )
        if centered_sticks != "auto":
            check_positive_int("centered_sticks", centered_sticks, minimum=0)
        # In the centred chart every stick is centred already: 0 asks for
        # nothing more; a count or "auto" is a choice that chart cannot make.
        if options["parameterization"] == "centered" and centered_sticks != 0:
            raise ValueError(
                "centered_sticks chooses the chart of each stick within "
                "parameterization='noncentered'; with parameterization='centered' "
                f"every stick is centred already, got centered_sticks={centered_sticks!r} "
                "(expected 0, or parameterization='noncentered')"
            )
    check_progress_bar(options["progress_bar"])
    if options["chain_method"] not in (None,) + _CHAIN_METHODS:
        raise ValueError(
            "chain_method must be None, 'parallel', 'sequential' or 'vectorized', "
            f"got {options['chain_method']!r}"
        )


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
        "progress_bar": False,
    },
    run=run_nuts,
    validate=_validate,
)
