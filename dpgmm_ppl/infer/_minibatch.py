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
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dpgmm_ppl.infer._progress import StepBar

__all__ = ["LP_ROWS", "SEED_ROWS", "STEPS_PER_CHUNK", "run_minibatch_chains"]

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


def run_minibatch_chains(
    rng_key, num_chains, density, guide, unravel, step, init_state, options, *, bar=None
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

    Returns
    -------
    tuple
        ``positions``, ``lp``, ``losses``, ``history`` stacked over restarts,
        and the timing dict.
    """
    data = np.asarray(density.data)
    num_data = data.shape[0]
    batch_size, num_steps = options["batch_size"], options["num_steps"]
    history_every, num_samples = options["history_every"], options["num_samples"]
    num_frames = -(-num_steps // history_every)
    chunk = min(STEPS_PER_CHUNK, num_steps)
    run_chunk = _make_chunk_runner(step, guide, num_steps, history_every)

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

    compiled, compile_seconds = {}, [0.0]

    def call(function, *args):
        # Compiled ahead of the first call, so that compiling is timed apart.
        if function not in compiled:
            begin = time.perf_counter()
            compiled[function] = function.lower(*args).compile()
            compile_seconds[0] += time.perf_counter() - begin
        return compiled[function](*args)

    bar = StepBar("SVI", 0, enabled=False) if bar is None else bar
    start = time.perf_counter()
    key_lp, key_chains = jax.random.split(rng_key)
    gather = lambda index: density.rows_in_frame(data[index])
    lp_rows = gather(_host_generator(key_lp).integers(0, num_data, size=min(num_data, LP_ROWS)))
    results = []
    pending = []  # (losses, steps) of chunks dispatched but not yet counted on the bar
    for chain_key in jax.random.split(key_chains, num_chains):
        key_init, key_fit, key_draws, key_host = jax.random.split(chain_key, 4)
        generator = _host_generator(key_host)
        seed_rows = gather(generator.choice(num_data, min(num_data, SEED_ROWS), replace=False))
        params = guide.init(call(seed_position, key_init, seed_rows))
        frames = jnp.zeros((num_frames,) + params["loc"].shape, params["loc"].dtype)
        carry = (init_state(params), frames, key_fit)
        losses = []
        for first in range(0, num_steps, chunk):
            indices = np.arange(first, first + chunk)
            batches = gather(generator.integers(0, num_data, size=(chunk, batch_size)))
            carry, chunk_losses = call(run_chunk, carry, batches, indices)
            losses.append(chunk_losses[: num_steps - first])
            if bar.enabled:
                pending.append((chunk_losses, min(chunk, num_steps - first)))
                pending = _count_finished(bar, pending)
        state, frames, _ = carry
        positions, lp, history = call(finish, state.params, frames, key_draws, lp_rows)
        results.append((positions, lp, jnp.concatenate(losses), history))
    results = jax.block_until_ready(results)
    _count_finished(bar, pending, keep=0)
    elapsed = time.perf_counter() - start
    stacked = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *results)
    timing = {"compile_seconds": compile_seconds[0], "run_seconds": elapsed - compile_seconds[0]}
    return stacked, timing


def _count_finished(bar, pending, keep=1):
    """Wait for all but the last ``keep`` pending chunks and count their steps on ``bar``."""
    for chunk_losses, num_steps in pending[: len(pending) - keep]:
        jax.block_until_ready(chunk_losses)
        bar.advance(num_steps)
    return pending[len(pending) - keep :]
