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

The restart loop is the one process's
(:func:`~dpgmm_ppl.infer._minibatch.run_minibatch_chains`); this module gives
it the row source that knows where the rows are (:class:`SpreadRows`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from dpgmm_ppl.density import bucket_size
from dpgmm_ppl.infer._minibatch import run_minibatch_chains
from dpgmm_ppl.sharding import DATA_AXIS

__all__ = ["SpreadRows", "run_spread_minibatch_chains"]


class SpreadRows:
    """The row source of a process that holds only its own rows of the data set.

    It knows which process holds which rows of the whole data set, and this
    process's rows; it implements :class:`~dpgmm_ppl.infer._minibatch.RowSource`.

    Parameters
    ----------
    density : LogDensity
        Built with ``keep_data_on_host=True`` from a global array: its
        ``data`` are this process's rows, its ``process_rows`` say where
        they lie in the whole data set.
    """

    def __init__(self, density):
        rows = density.process_rows
        self.density, self.local, self.mesh = density, density.data, rows.mesh
        self.num_data = density.num_data
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

    def stack(self, *leaves):
        # Replicated in every process, so each can read the whole of every leaf.
        return np.stack([np.asarray(leaf) for leaf in leaves])


def run_spread_minibatch_chains(
    rng_key, num_chains, density, guide, unravel, step, init_state, options, *, bar=None
):
    """:func:`~dpgmm_ppl.infer._minibatch.run_minibatch_chains` for rows spread over processes.

    ``density`` is built with ``keep_data_on_host=True`` from a global array
    (its ``data`` are this process's rows). Every process must call it with
    the same arguments; every process returns the same outputs.
    """
    return run_minibatch_chains(
        rng_key, num_chains, density, guide, unravel, step, init_state, options,
        bar=bar, rows=SpreadRows(density),
    )
