"""Stochastic VI on minibatches streamed from the host.

The data stay a NumPy array in host memory; each restart draws its batch
indices with a NumPy generator seeded from its key, gathers
``steps_per_chunk`` batches at a time and hands them to one compiled
``lax.scan`` over those steps. JAX dispatches a chunk asynchronously, so the
host gathers the next chunk while the device runs the current one. Device
memory holds one chunk of batches; the data set is bounded by host memory.

Every step's negative ELBO uses
:attr:`~dpgmm_ppl.density.LogDensity.minibatch_potential_fn`, whose
log-likelihood term is the batch's scaled by ``N / batch_size``: an unbiased
estimate of the full-data objective (batches drawn with replacement).

The restart loop reads rows only through a row source (:class:`RowSource`):
:class:`HostRows` when one process holds every row, and
:class:`~dpgmm_ppl.infer._minibatch_processes.SpreadRows` when each process
of a multi-process run holds its own.
"""

from __future__ import annotations

import time
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dpgmm_ppl.infer._progress import StepBar

__all__ = [
    "LP_ROWS", "SEED_ROWS", "STEPS_PER_CHUNK", "HostRows", "RowSource", "run_minibatch_chains",
]

#: Steps compiled into one scan; the host gathers this many batches at a time.
STEPS_PER_CHUNK = 500
#: Rows the k-means++ seeding of each restart looks at (a uniform subsample).
SEED_ROWS = 20_000
#: Rows on which every draw's ``lp`` is estimated (the same rows for every restart).
LP_ROWS = 65_536


def _host_generator(rng_key):
    """A NumPy generator determined by a JAX key: the same key, the same batches."""
    words = np.asarray(jax.random.bits(rng_key, (4,), dtype=jnp.uint32))
    return np.random.default_rng(words.tolist())


def _make_chunk_runner(step, guide, num_steps, history_every):
    """``run_chunk(carry, batches, indices) -> (carry, losses)``; indices past ``num_steps`` are padding."""

    def one_step(carry, inputs):
        state, frames, key = carry
        batch, index = inputs
        new_state, info = step(state, jax.random.fold_in(key, index), batch)
        valid = index < num_steps
        state = jax.tree_util.tree_map(lambda new, old: jnp.where(valid, new, old), new_state, state)
        is_frame = valid & (((index + 1) % history_every == 0) | (index + 1 == num_steps))
        slot = jnp.minimum(index // history_every, frames.shape[0] - 1)
        frames = frames.at[slot].set(jnp.where(is_frame, guide.mean(state.params), frames[slot]))
        return (state, frames, key), info.loss

    def run_chunk(carry, batches, indices):
        return jax.lax.scan(one_step, carry, (batches, indices))

    return jax.jit(run_chunk, donate_argnums=(0,))


class RowSource(Protocol):
    """Where the restart loop of :func:`run_minibatch_chains` reads its rows from.

    Indices always address the whole data set, ``0 <= i < num_data``, and
    every process draws the same ones; a source decides where the rows they
    name come from and where the arrays it returns are placed.
    """

    #: Rows in the whole data set.
    num_data: int

    def whole_rows(self, indices):
        """The rows at ``indices``, in the density's frame, whole in every process."""

    def batches(self, indices):
        """The batch argument of the step for a chunk of ``(steps, batch_size)`` indices."""

    def replicated(self, tree):
        """``tree``, the same in every process, placed where every step can read it."""

    def stack(self, *leaves):
        """One output of every restart, stacked along a new first axis."""


class HostRows:
    """The row source of one process that holds every row in host memory.

    Parameters
    ----------
    density : LogDensity
        Built with ``keep_data_on_host=True``.

    Examples
    --------
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> density = SimpleNamespace(data=np.arange(5.0), rows_in_frame=lambda x: x / 2)
    >>> rows = HostRows(density)
    >>> rows.num_data, rows.whole_rows(np.array([4, 0])).tolist()
    (5, [2.0, 0.0])
    """

    def __init__(self, density):
        self.density = density
        self.data = np.asarray(density.data)
        self.num_data = self.data.shape[0]

    def whole_rows(self, indices):
        return self.density.rows_in_frame(self.data[indices])

    def batches(self, indices):
        return self.whole_rows(indices)

    def replicated(self, tree):
        return tree  # one process: already where every step can read it

    def stack(self, *leaves):
        return jnp.stack(leaves)


def _signature(args):
    """What a compiled program depends on: the tree, shapes and dtypes of ``args``."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


def _make_seed_and_finish(density, guide, unravel, num_samples):
    """The jitted k-means++ seeding of a restart, and its draws, ``lp`` and history."""

    @jax.jit
    def seed_position(key, rows):
        return ravel_pytree(density.seed_position(key, rows))[0]

    @jax.jit
    def finish(params, frames, key, lp_rows):
        draws = guide.sample(params, key, num_samples)
        # lp of each draw on the same fixed rows, scaled to the whole data set:
        # an unbiased estimate (exact, it would read all N points per draw).
        potential = jax.lax.map(
            lambda z: density.minibatch_potential_fn(unravel(z), lp_rows), draws
        )
        history = jax.vmap(lambda z: density.constrain_fn(unravel(z)))(frames)
        return jax.vmap(unravel)(draws), -potential, history

    return seed_position, finish


class _Restarts:
    """Runs restarts one after another on batches read from a row source."""

    def __init__(self, rows, density, guide, unravel, step, init_state, options, bar):
        self.rows, self.guide, self.init_state, self.bar = rows, guide, init_state, bar
        self.batch_size, self.num_steps = options["batch_size"], options["num_steps"]
        history_every = options["history_every"]
        self.num_frames = -(-self.num_steps // history_every)
        self.chunk = min(STEPS_PER_CHUNK, self.num_steps)
        self.run_chunk = _make_chunk_runner(step, guide, self.num_steps, history_every)
        self.seed_position, self.finish = _make_seed_and_finish(
            density, guide, unravel, options["num_samples"]
        )
        self.compiled, self.compile_seconds = {}, 0.0
        self.pending = []  # (losses, steps) of chunks dispatched but not yet counted on the bar

    def call(self, function, *args):
        # Compiled ahead of the first call of each shape, so that compiling is timed apart.
        key = (function, _signature(args))
        if key not in self.compiled:
            begin = time.perf_counter()
            self.compiled[key] = function.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - begin
        return self.compiled[key](*args)

    def run(self, chain_key, lp_rows):
        """One restart: ``positions``, ``lp``, ``losses`` and ``history``."""
        rows, num_steps, chunk = self.rows, self.num_steps, self.chunk
        num_data = rows.num_data
        key_init, key_fit, key_draws, key_host = jax.random.split(chain_key, 4)
        generator = _host_generator(key_host)
        seed_rows = rows.whole_rows(
            generator.choice(num_data, min(num_data, SEED_ROWS), replace=False)
        )
        params = self.guide.init(self.call(self.seed_position, key_init, seed_rows))
        frames = jnp.zeros((self.num_frames,) + params["loc"].shape, params["loc"].dtype)
        carry = rows.replicated((self.init_state(params), frames, key_fit))
        losses = []
        for first in range(0, num_steps, chunk):
            indices = rows.replicated(np.arange(first, first + chunk))
            batches = rows.batches(generator.integers(0, num_data, size=(chunk, self.batch_size)))
            carry, chunk_losses = self.call(self.run_chunk, carry, batches, indices)
            losses.append(chunk_losses[: num_steps - first])
            if self.bar.enabled:
                self.pending.append((chunk_losses, min(chunk, num_steps - first)))
                self.pending = _count_finished(self.bar, self.pending)
        state, frames, _ = carry
        draw_key = rows.replicated(key_draws)
        positions, lp, history = self.call(self.finish, state.params, frames, draw_key, lp_rows)
        return positions, lp, jnp.concatenate(losses), history


def run_minibatch_chains(
    rng_key, num_chains, density, guide, unravel, step, init_state, options, *, bar=None,
    rows=None,
):
    """Run every restart on streamed minibatches, one restart after another.

    Parameters
    ----------
    rng_key : PRNGKey
        Seeds the rows on which ``lp`` is estimated and every restart.
    num_chains : int
        Restarts.
    density : LogDensity
        Built with ``keep_data_on_host=True``.
    guide, unravel, step
        The family, the flat-to-dict map and ``build_step(...)`` on
        ``density.minibatch_potential_fn``.
    init_state : Callable
        ``init_state(params) -> SVIState``.
    options : dict
        ``batch_size``, ``num_steps``, ``num_samples``, ``history_every``.
    bar : StepBar, optional
        Advanced on the host as each chunk of steps finishes (one chunk
        behind the dispatch, so that the host still gathers the next chunk's
        batches while the device runs the current one).
    rows : RowSource, optional
        Where the rows come from; by default :class:`HostRows` of ``density``.

    Returns
    -------
    tuple
        ``positions``, ``lp``, ``losses``, ``history`` stacked over restarts,
        and the timing dict.
    """
    rows = HostRows(density) if rows is None else rows
    bar = StepBar("SVI", 0, enabled=False) if bar is None else bar
    restarts = _Restarts(rows, density, guide, unravel, step, init_state, options, bar)
    start = time.perf_counter()
    key_lp, key_chains = jax.random.split(rng_key)
    num_lp_rows = min(rows.num_data, LP_ROWS)
    lp_indices = _host_generator(key_lp).integers(0, rows.num_data, size=num_lp_rows)
    lp_rows = rows.replicated(rows.whole_rows(lp_indices))
    results = [restarts.run(key, lp_rows) for key in jax.random.split(key_chains, num_chains)]
    results = jax.block_until_ready(results)
    _count_finished(bar, restarts.pending, keep=0)
    elapsed = time.perf_counter() - start
    stacked = jax.tree_util.tree_map(rows.stack, *results)
    compile_seconds = restarts.compile_seconds
    timing = {"compile_seconds": compile_seconds, "run_seconds": elapsed - compile_seconds}
    return stacked, timing


def _count_finished(bar, pending, keep=1):
    """Wait for all but the last ``keep`` pending chunks and count their steps on ``bar``."""
    for chunk_losses, num_steps in pending[: len(pending) - keep]:
        jax.block_until_ready(chunk_losses)
        bar.advance(num_steps)
    return pending[len(pending) - keep :]
