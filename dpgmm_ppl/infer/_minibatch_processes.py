"""Minibatch SVI on rows spread over processes: each process gathers its part of each batch.

Every process draws the same batch indices, into the whole data set, from
the same generator as one process would (:mod:`dpgmm_ppl.infer._minibatch`),
and gathers from its own rows the draws that fall among them. The batch of a
step is then one global array whose slots are split by process along the
mesh's ``"data"`` axis, each process's drawn rows first and a mask over the
rest; its likelihood is scaled by ``N`` over the number of draws, as on one
host. No process reads another's rows, and the steps are those one process
with all the rows takes, summed in another order. The few rows that every
process needs whole (the k-means++ seeding's and the rows on which ``lp``
is estimated, at most :data:`~dpgmm_ppl.infer._minibatch.LP_ROWS`) are
gathered across processes.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding, PartitionSpec

from dpgmm_ppl.density import bucket_size
from dpgmm_ppl.infer._minibatch import (
    LP_ROWS, SEED_ROWS, STEPS_PER_CHUNK, _count_finished, _host_generator, _make_chunk_runner,
)
from dpgmm_ppl.infer._progress import StepBar
from dpgmm_ppl.sharding import DATA_AXIS

__all__ = ["run_spread_minibatch_chains"]


class _Layout:
    """Which process holds which rows of the whole data set, and this process's rows."""

    def __init__(self, density):
        rows = density.process_rows
        self.density, self.local, self.mesh = density, density.data, rows.mesh
        self.block, self.num_blocks = rows.block, len(rows.row_counts)
        self.ends = np.cumsum(rows.row_counts)
        self.offset = rows.offset
        self.slots = rows.mesh.shape[DATA_AXIS] // self.num_blocks

    def owner(self, indices):
        return np.searchsorted(self.ends, indices, side="right")

    def whole_rows(self, indices):
        """The rows at ``indices`` of the whole data set, in the frame, in every process."""
        mine = self.owner(indices) == self.block
        rows = np.zeros(indices.shape + self.local.shape[1:], self.local.dtype)
        rows[mine] = self.density.rows_in_frame(self.local[indices[mine] - self.offset])
        gathered = np.asarray(multihost_utils.process_allgather(rows))
        blocks = np.asarray(multihost_utils.process_allgather(np.int64(self.block)))
        where = np.argsort(blocks)[self.owner(indices)]
        return gathered[where, np.arange(indices.shape[0])]

    def batches(self, indices):
        """This process's slots of a chunk's batches (its drawn rows first), the
        mask over them, and the draws of each step."""
        owners = self.owner(indices)
        counts = np.stack([np.sum(owners == b, axis=1) for b in range(self.num_blocks)])
        capacity = min(bucket_size(counts.max()), indices.shape[1])
        capacity = -(-capacity // self.slots) * self.slots
        mine = owners == self.block
        order = np.argsort(~mine, axis=1, kind="stable")[:, :capacity]
        mask = np.take_along_axis(mine, order, axis=1)
        picked = np.where(mask, np.take_along_axis(indices, order, axis=1) - self.offset, 0)
        rows = self.density.rows_in_frame(self.local[picked])
        # Every draw is in one process's slots: a step's count is the batch size,
        # known here, so that no step sums the mask across processes.
        num_drawn = self.replicated(np.full(indices.shape[0], indices.shape[1], np.int32))
        return self.to_global(rows, 1), self.to_global(mask, 1), num_drawn

    def to_global(self, local, axis):
        spec = [None] * local.ndim
        spec[axis] = DATA_AXIS
        shape = list(local.shape)
        shape[axis] *= self.num_blocks
        sharding = NamedSharding(self.mesh, PartitionSpec(*spec))
        return jax.make_array_from_process_local_data(sharding, local, tuple(shape))

    def replicated(self, tree):
        return multihost_utils.host_local_array_to_global_array(tree, self.mesh, PartitionSpec())


def _signature(args):
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


def run_spread_minibatch_chains(
    rng_key, num_chains, density, guide, unravel, step, init_state, options, *, bar=None
):
    """:func:`~dpgmm_ppl.infer._minibatch.run_minibatch_chains` for rows spread over processes.

    ``density`` is built with ``keep_data_on_host=True`` from a global array
    (its ``data`` are this process's rows). Every process must call it with
    the same arguments; every process returns the same outputs.
    """
    layout = _Layout(density)
    num_data = density.num_data
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
        potential = jax.lax.map(
            lambda z: density.minibatch_potential_fn(unravel(z), lp_rows), draws
        )
        history = jax.vmap(lambda z: density.constrain_fn(unravel(z)))(frames)
        return jax.vmap(unravel)(draws), -potential, history

    compiled, compile_seconds = {}, [0.0]

    def call(function, *args):
        # Compiled ahead of the first call of each shape, so that compiling is timed apart.
        key = (function, _signature(args))
        if key not in compiled:
            begin = time.perf_counter()
            compiled[key] = function.lower(*args).compile()
            compile_seconds[0] += time.perf_counter() - begin
        return compiled[key](*args)

    bar = StepBar("SVI", 0, enabled=False) if bar is None else bar
    start = time.perf_counter()
    key_lp, key_chains = jax.random.split(rng_key)
    lp_indices = _host_generator(key_lp).integers(0, num_data, size=min(num_data, LP_ROWS))
    lp_rows = layout.replicated(layout.whole_rows(lp_indices))
    results, pending = [], []
    for chain_key in jax.random.split(key_chains, num_chains):
        key_init, key_fit, key_draws, key_host = jax.random.split(chain_key, 4)
        generator = _host_generator(key_host)
        seed_rows = layout.whole_rows(
            generator.choice(num_data, min(num_data, SEED_ROWS), replace=False)
        )
        params = guide.init(call(seed_position, key_init, seed_rows))
        frames = jnp.zeros((num_frames,) + params["loc"].shape, params["loc"].dtype)
        carry = layout.replicated((init_state(params), frames, key_fit))
        losses = []
        for first in range(0, num_steps, chunk):
            indices = layout.replicated(np.arange(first, first + chunk))
            batches = layout.batches(generator.integers(0, num_data, size=(chunk, batch_size)))
            carry, chunk_losses = call(run_chunk, carry, batches, indices)
            losses.append(chunk_losses[: num_steps - first])
            if bar.enabled:
                pending.append((chunk_losses, min(chunk, num_steps - first)))
                pending = _count_finished(bar, pending)
        state, frames, _ = carry
        draw_key = layout.replicated(key_draws)
        positions, lp, history = call(finish, state.params, frames, draw_key, lp_rows)
        results.append((positions, lp, jnp.concatenate(losses), history))
    results = jax.block_until_ready(results)
    _count_finished(bar, pending, keep=0)
    elapsed = time.perf_counter() - start
    stacked = jax.tree_util.tree_map(lambda *leaves: np.stack([np.asarray(x) for x in leaves]),
                                     *results)
    timing = {"compile_seconds": compile_seconds[0], "run_seconds": elapsed - compile_seconds[0]}
    return stacked, timing
