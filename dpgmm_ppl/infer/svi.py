r"""Stochastic variational inference: a Gaussian family on the unconstrained space.

The variational family :math:`q_\phi(z)` is a Gaussian on the flattened
unconstrained position :math:`z` of the shared
:class:`~dpgmm_ppl.density.LogDensity` (``jax.flatten_util.ravel_pytree``),
reparameterised as :math:`z = m + L\varepsilon`. Because ``potential_fn``
already carries the log-Jacobian of the constraining transforms, the negative
ELBO needs nothing else:

.. math::

    \mathcal{L}(\phi) = \mathbb{E}_{q_\phi}\big[U(z)\big] - \mathbb{H}[q_\phi],
    \qquad U(z) = -\log p(x, T(z)) - \log\lvert\det J_T(z)\rvert .

The expectation is a Monte-Carlo average over ``num_particles``
reparameterised draws; the entropy is exact. This is the objective of
NumPyro's ``Trace_ELBO`` with ``AutoNormal`` (``guide="diagonal"``),
``AutoLowRankMultivariateNormal`` (``"lowrank"``) or
``AutoMultivariateNormal`` (``"full"``), whose guides live on the same
unconstrained space through the same ``biject_to`` transforms.

The families (``"diagonal"``, ``"lowrank"``, ``"full"``) are in
:mod:`dpgmm_ppl.infer.guides`.

Every restart (chain) starts from its own k-means++ seeding with small
scales, runs the optimiser inside ``lax.scan`` (any
``optax.GradientTransformation``, learning-rate schedules included), then
draws ``num_samples`` positions from its fitted family.

With ``batch_size``, each step sees a minibatch streamed from the host and the
likelihood scaled up to the whole data set (:mod:`dpgmm_ppl.infer._minibatch`):
the way to fit millions of points.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from dpgmm_ppl._validation import check_parameterization, check_positive_int
from dpgmm_ppl.density import LogDensity
from dpgmm_ppl.infer._common import (
    cached_program,
    chains_program,
    check_optimizer_options,
    compile_and_run,
    resolve_optimizer_chain_method,
)
from dpgmm_ppl.infer._minibatch import run_minibatch_chains
from dpgmm_ppl.infer._minibatch_processes import run_spread_minibatch_chains
from dpgmm_ppl.infer._optimise import optimizer_step
from dpgmm_ppl.infer._progress import check_progress_bar, optimiser_bar
from dpgmm_ppl.infer._svi_program import make_chain_runner, output
from dpgmm_ppl.infer._types import Optimizer, Position, Potential, Unravel
from dpgmm_ppl.infer.base import Backend, BackendOutput, check_chart
from dpgmm_ppl.infer.guides import GUIDES, Guide, make_guide

__all__ = [
    "SVI",
    "Guide",
    "SVIInfo",
    "SVIState",
    "build_step",
    "init",
    "make_guide",
    "negative_elbo",
    "run_svi",
    "step",
]

def negative_elbo(
    params: Position, rng_key: jax.Array, data: Any, *, guide: Guide, potential_fn: Potential,
    unravel: Unravel, num_particles: int = 1,
) -> jax.Array:
    """Monte-Carlo negative ELBO: the mean potential over draws minus the entropy.

    Parameters
    ----------
    params : dict
        Parameters of ``guide``.
    rng_key : PRNGKey
        Seeds the ``num_particles`` reparameterised draws.
    data : Array
        Passed on to ``potential_fn``.
    guide : Guide
        The family.
    potential_fn : Callable[[dict, Array], Array]
        ``LogDensity.potential_fn``.
    unravel : Callable
        Maps a flat vector to a position dict (from ``ravel_pytree``).
    num_particles : int
        Draws in the Monte-Carlo average.

    Returns
    -------
    Array
        A scalar.
    """
    draws = guide.sample(params, rng_key, num_particles)
    if num_particles == 1:
        # No particle axis: on XLA:CPU a size-1 batch axis slows the reductions down.
        energy = potential_fn(unravel(draws[0]), data)
    else:
        energy = jnp.mean(jax.vmap(lambda z: potential_fn(unravel(z), data))(draws))
    return energy - guide.entropy(params)


class SVIState(NamedTuple):
    """What the next optimisation step needs."""

    params: dict
    opt_state: Any


class SVIInfo(NamedTuple):
    """Diagnostics of one step, stacked by ``lax.scan``."""

    loss: Any
    is_finite: Any


def build_step(
    guide: Guide, potential_fn: Potential, unravel: Unravel, optimizer: Optimizer, *,
    num_particles: int = 1,
) -> Callable[[SVIState, jax.Array, Any], tuple[SVIState, SVIInfo]]:
    """One optimiser step on the negative ELBO, as a pure function.

    Parameters
    ----------
    guide : Guide
        The family.
    potential_fn, unravel
        As for :func:`negative_elbo`.
    optimizer : optax.GradientTransformation
        Any optax transformation.
    num_particles : int
        Draws per ELBO estimate.

    Returns
    -------
    Callable
        ``step(state, rng_key, data) -> (SVIState, SVIInfo)``. A step whose
        loss or gradient is not finite leaves the state as it was.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, optax
    >>> family = make_guide("diagonal", 2)
    >>> potential = lambda position, data: 0.5 * jnp.sum((position - data) ** 2)
    >>> optimizer = optax.adam(optax.cosine_decay_schedule(0.05, 1000, alpha=0.01))
    >>> step = jax.jit(build_step(family, potential, lambda z: z, optimizer, num_particles=8))
    >>> params = family.init(jnp.zeros(2))
    >>> state = SVIState(params, optimizer.init(params))
    >>> for i in range(1000):
    ...     state, info = step(state, jax.random.PRNGKey(i), jnp.array([1.0, -1.0]))
    >>> jnp.round(state.params["loc"], 1).tolist()  # the exact posterior: N([1, -1], I)
    [1.0, -1.0]
    >>> jnp.round(jnp.exp(state.params["log_scale"]), 1).tolist()
    [1.0, 1.0]
    """

    def loss_fn(params, rng_key, data):
        return negative_elbo(
            params, rng_key, data, guide=guide, potential_fn=potential_fn,
            unravel=unravel, num_particles=num_particles,
        )

    update = optimizer_step(loss_fn, optimizer)

    def step(state, rng_key, data):
        # A non-finite loss or gradient (a rare far-tail draw) skips the step.
        params, opt_state, loss, is_finite = update(state.params, state.opt_state, rng_key, data)
        return SVIState(params, opt_state), SVIInfo(loss, is_finite)

    return step


def _family(density, guide, rank):
    """The variational family on ``density``'s unconstrained space, and its ``unravel``."""
    flat, unravel = ravel_pytree(density.init_position)
    dim = flat.shape[0]
    if guide == "lowrank" and not 1 <= rank < dim:
        raise ValueError(
            f"rank must be in [1, {dim}) for this model's {dim} unconstrained "
            f"coordinates, got {rank}"
        )
    return make_guide(guide, dim, rank=rank), unravel


def init(
    start: jax.Array | Position, density: LogDensity, optimizer: Optimizer, *,
    guide: str = "diagonal", rank: int = 4,
) -> SVIState:
    """The state of one SVI restart: the family centred on a start, small scales.

    Parameters
    ----------
    start : PRNGKey or dict
        A key, which seeds k-means++ (:func:`run_svi` seeds restart ``i``
        with the first of ``jax.random.split(key_i, 3)``, ``key_i`` being
        ``jax.random.split(rng_key, num_chains)[i]``), or an unconstrained
        position.
    density : LogDensity
        From :func:`~dpgmm_ppl.density.build_log_density`.
    optimizer : optax.GradientTransformation
        Any optax transformation.
    guide : {"diagonal", "lowrank", "full"}
        The family (:func:`make_guide`).
    rank : int
        Rank of ``"lowrank"``.

    Returns
    -------
    SVIState
    """
    family, _ = _family(density, guide, rank)
    position = start if isinstance(start, dict) else density.seed_position(start, density.data)
    params = family.init(ravel_pytree(position)[0])
    return SVIState(params, optimizer.init(params))


def step(
    rng_key: jax.Array, state: SVIState, density: LogDensity, optimizer: Optimizer, *,
    guide: str = "diagonal", rank: int = 4, num_particles: int = 1,
) -> tuple[SVIState, SVIInfo]:
    """One optimiser step on the negative ELBO of ``density``, a pure function.

    The step of :func:`run_svi`'s loop (:func:`build_step` on the density's
    potential and data); ``run_svi`` gives step ``i`` of a restart the key
    ``jax.random.fold_in(key, i)``, ``key`` the second of the restart's
    three keys (see :func:`init`).

    Parameters
    ----------
    rng_key : PRNGKey
        Seeds the step's Monte-Carlo draws.
    state : SVIState
        From :func:`init` or an earlier step.
    density, optimizer, guide, rank
        As given to :func:`init`.
    num_particles : int
        Draws per ELBO estimate.

    Returns
    -------
    (SVIState, SVIInfo)

    Examples
    --------
    >>> import jax, numpy as np, optax
    >>> from jax.flatten_util import ravel_pytree
    >>> from dpgmm_ppl.density import build_log_density
    >>> x = np.concatenate([np.full(40, -5.0), np.full(60, 5.0)])
    >>> x += np.random.default_rng(0).normal(size=100)
    >>> density = build_log_density(x, num_components=3)
    >>> optimizer = optax.adam(0.03)
    >>> state = init(jax.random.PRNGKey(0), density, optimizer)
    >>> one_step = jax.jit(lambda key, state: step(key, state, density, optimizer))
    >>> for i in range(1000):
    ...     state, info = one_step(jax.random.PRNGKey(i), state)
    >>> unravel = ravel_pytree(density.init_position)[1]
    >>> values = density.constrain_fn(unravel(state.params["loc"]))  # the family's mean
    >>> sorted(np.round(values["loc"][values["weights"] > 0.2]).tolist())
    [-5.0, 5.0]
    """
    family, unravel = _family(density, guide, rank)
    one_step = build_step(
        family, density.potential_fn, unravel, optimizer, num_particles=num_particles
    )
    return one_step(state, rng_key, density.data)


@functools.lru_cache(maxsize=16)
def default_optimizer(num_steps):
    """SVI's default optimiser for ``num_steps`` steps, one object per length,
    so that fits of the same length share their compiled program."""
    return optax.adam(optax.cosine_decay_schedule(0.03, num_steps, alpha=0.03))


def run_svi(
    rng_key: jax.Array, density: LogDensity, *, num_chains: int, guide: str, rank: int,
    optimizer: Optimizer, num_steps: int, num_particles: int,
    num_samples: int, history_every: int, chain_method: str | None, parameterization: str,
    batch_size: int | None = None, progress_bar: bool = False,
) -> BackendOutput:
    """Fit a Gaussian family on the unconstrained space by maximising the ELBO.

    Parameters
    ----------
    rng_key : PRNGKey
        Seeds the k-means++ start of each restart, the Monte-Carlo draws of
        every step and the final draws; the same key gives the same output.
    density : LogDensity
        The shared log-density.
    num_chains : int
        Independent restarts.
    guide : {"diagonal", "lowrank", "full"}
        The variational family (see :func:`make_guide`).
    rank : int
        Rank of the low-rank factor, in ``[1, dim)``; used by ``"lowrank"``.
    optimizer : optax.GradientTransformation or None
        ``None``: Adam whose learning rate decays from 0.03 to 0.0009 over
        ``num_steps`` (cosine): the large early rate moves the scales of the
        unused components out to their prior widths quickly, the small final
        rate averages out the step-to-step Monte-Carlo noise in the mean.
    num_steps : int
        Optimisation steps per restart.
    num_particles : int
        Reparameterised draws per ELBO estimate.
    num_samples : int
        Draws per restart from the fitted family.
    history_every : int
        Record the family's mean, constrained, every this many steps (and
        at the last).
    chain_method : {"vectorized", "sequential", None}
        As for :func:`~dpgmm_ppl.infer.map.run_map`: ``None`` is
        ``"sequential"`` on the CPU and ``"vectorized"`` elsewhere.
    parameterization : {"centered", "noncentered"}
        The chart of the unconstrained space; ``density`` must have been
        built in it (``ValueError`` otherwise).
    batch_size : int or None
        ``None``: every step evaluates the ELBO on all the data. An int:
        every step draws this many points (with replacement) from the host
        copy of the data and scales their log-likelihood by
        ``N / batch_size``; restarts then run one after another, and each
        draw's ``lp`` is estimated the same way, on one fixed set of
        ``min(N, 65536)`` rows shared by all restarts (an unbiased estimate
        whose error is common to every draw).
    progress_bar : bool
        Show a tqdm bar of the steps of every restart on stderr, advanced every
        ``history_every`` steps inside a long fit's loop, at the end of a short
        one (:func:`~dpgmm_ppl.infer._progress.optimiser_bar`), or between the
        chunks of streamed minibatches; the result is the same as without it.

    Returns
    -------
    BackendOutput
        ``positions`` of shape ``(num_chains, num_samples, ...)``; sample
        stats ``lp`` (minus the potential of each draw) and ``loss`` (the
        last step's loss, repeated); ``losses`` of shape
        ``(num_chains, num_steps)``; ``history`` the constrained means,
        ``(num_chains, frame, ...)``.

    Notes
    -----
    SVI's default chart is the centred one, where the ELBO ended higher on
    the seed data (``docs/backends.md``).

    Examples
    --------
    >>> import numpy as np, dpgmm_ppl
    >>> x = np.concatenate([np.linspace(-6, -4, 50), np.linspace(4, 6, 50)])
    >>> result = dpgmm_ppl.fit(x, backend="svi", num_components=4, num_steps=1000,
    ...                        num_samples=200)
    >>> result.samples["loc"].shape, result.losses.shape
    ((1, 200, 4), (1, 1000))
    >>> heavy = result.samples["weights"][0].mean(0) > 0.2
    >>> sorted(np.round(result.samples["loc"][0].mean(0)[heavy]).tolist())
    [-5.0, 5.0]
    """
    check_chart(density, parameterization)
    family, unravel = _family(density, guide, rank)
    # The default by name: a key of plain values also names the program on disk.
    optimizer_key = "default" if optimizer is None else optimizer
    if optimizer is None:
        optimizer = default_optimizer(num_steps)
    options = {
        "num_steps": num_steps, "num_particles": num_particles,
        "num_samples": num_samples, "history_every": history_every,
    }
    bar = optimiser_bar("SVI", density, num_chains * num_steps, progress_bar)

    def make_step(potential_fn):
        return build_step(family, potential_fn, unravel, optimizer, num_particles=num_particles)

    def init_state(params):
        return SVIState(params, optimizer.init(params))

    if batch_size is not None:
        # Rows spread over processes: each gathers its part of every batch.
        spread = density.process_rows is not None
        runner = run_spread_minibatch_chains if spread else run_minibatch_chains
        with bar:
            (positions, lp, losses, history), timing = runner(
                rng_key, num_chains, density, family, unravel,
                make_step(density.minibatch_potential_fn), init_state,
                {**options, "batch_size": batch_size}, bar=bar,
            )
        return output(positions, lp, losses, history, num_steps, history_every, timing)
    chain_keys = jax.random.split(rng_key, num_chains)
    # k-means++ seeding, fitting, drawing and the history's constraining are
    # one compiled program: each piece compiled apart costs as much again.
    # It is kept for later fits of the same shape, chart and options
    # (and on disk, dpgmm_ppl/infer/_stored_programs.py).
    program_key = (
        "svi", density.program.key, guide, rank, optimizer_key, tuple(sorted(options.items())),
        resolve_optimizer_chain_method(chain_method), bar.in_program,
    )
    template = density._replace(data=None)
    run_all = cached_program(
        program_key,
        lambda: chains_program(
            make_chain_runner(template, family, unravel, make_step, init_state, options, bar),
            chain_method,
        ),
    )
    (positions, lp, losses, history), timing = compile_and_run(
        run_all, (chain_keys, density.data, density.params), bar
    )
    return output(positions, lp, losses, history, num_steps, history_every, timing)


def _validate(options):
    if options["guide"] not in GUIDES:
        raise ValueError(f"guide must be one of {list(GUIDES)}, got {options['guide']!r}")
    check_optimizer_options(options, example="optax.adam(0.01)")
    for name in ("rank", "num_steps", "num_particles", "num_samples", "history_every"):
        check_positive_int(name, options[name])
    check_parameterization(options["parameterization"])
    if options["batch_size"] is not None:
        check_positive_int("batch_size", options["batch_size"])
    check_progress_bar(options["progress_bar"])


SVI = Backend(
    name="svi",
    defaults={
        "guide": "diagonal",
        "rank": 4,
        "optimizer": None,
        "num_steps": 3_000,
        "num_particles": 1,
        "num_samples": 1_000,
        "history_every": 50,
        "chain_method": None,
        "parameterization": "centered",
        "batch_size": None,
        "progress_bar": False,
    },
    run=run_svi,
    validate=_validate,
    kind="variational",
    quick_options={"num_steps": 1000, "num_samples": 200},
    description="Gaussian variational posterior",
)
