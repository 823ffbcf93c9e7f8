"""Data parallelism with JAX's own sharding: the ``data`` plate split across devices.

The log-likelihood is a sum over points, so splitting the points across
devices splits the work: :func:`shard_data` places the observations on a
one-axis :class:`jax.sharding.Mesh` with a
:class:`~jax.sharding.NamedSharding` along the rows, and every jitted
function of the shared log-density then runs as one SPMD program, XLA
partitioning the per-point terms and reducing their sum across devices, while
the parameters (a few hundred numbers) stay replicated. Nothing here is
home-made communication: it is what ``jax.jit`` does with sharded inputs.

:func:`dpgmm_ppl.fit` takes ``mesh=``; :func:`~dpgmm_ppl.density.build_log_density`
takes it too. A data set whose size does not divide evenly is padded with
copies of its last row, and the model's ``mask`` keeps the padding out of the
likelihood.

Several processes (multi-host)
------------------------------
Every process calls :func:`jax.distributed.initialize` (``python -m
dpgmm_ppl.launch`` does it on one machine, see :mod:`dpgmm_ppl.launch`),
reads its own rows, and builds one global array from them with
:func:`process_local_data` (:func:`jax.make_array_from_process_local_data`
underneath). :func:`dpgmm_ppl.fit` takes that array: no process ever holds
another's rows. The priors' defaults and the standardising frame come from
sums gathered across processes (float64, on the host), the same numbers as
from the whole data; every backend then runs as one SPMD program over the
devices of all processes, and every process ends with the same
:class:`~dpgmm_ppl.Fit`. Rows of a process that are NaN in every column and
come after all its real rows are padding (:func:`process_local_data` pads
with them when the processes hold different numbers of rows).

Examples
--------
On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before
JAX is imported) makes four devices to try it with:

>>> import jax, numpy as np
>>> mesh = data_mesh()
>>> sharded, num_data = shard_data(np.arange(10.0, dtype=np.float32), mesh)
>>> num_data, sharded.shape[0] % len(jax.devices())
(10, 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, TypeGuard

import jax
import numpy as np
import numpy.typing as npt
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DATA_AXIS", "SpreadRows", "data_mesh", "process_local_data", "shard_data"]

#: The mesh axis along which the data plate is split.
DATA_AXIS = "data"


def data_mesh(devices: Iterable[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"data"`` over ``devices`` (default: all of them).

    Parameters
    ----------
    devices : sequence of jax.Device, optional
        The devices to split the data across; ``jax.devices()`` by default
        (with several processes: the devices of every process, in process order).

    Returns
    -------
    jax.sharding.Mesh
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must name at least one device, got an empty sequence")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_mesh(mesh: object) -> Mesh:
    """``mesh`` must be a :class:`jax.sharding.Mesh` with a ``"data"`` axis."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (see dpgmm_ppl.sharding.data_mesh), "
            f"got {type(mesh).__name__}"
        )
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"mesh must have an axis named {DATA_AXIS!r} to split the data along, "
            f"got axes {mesh.axis_names}"
        )
    return mesh


def _row_spec(ndim: int) -> PartitionSpec:
    return PartitionSpec(DATA_AXIS, *([None] * (ndim - 1)))


def shard_data(data: npt.ArrayLike, mesh: Mesh) -> tuple[jax.Array, int]:
    """Place ``data`` on ``mesh``, rows split along its ``"data"`` axis.

    Parameters
    ----------
    data : array of shape (N,) or (N, D)
        Observations (already validated).
    mesh : jax.sharding.Mesh
        A mesh with a ``"data"`` axis (:func:`data_mesh`); other axes, if
        any, hold replicas.

    Returns
    -------
    (jax.Array, int)
        The rows, padded with copies of the last one to a multiple of the
        ``"data"`` axis size, as a global array sharded by rows; and ``N``,
        the number of real rows (pass ``mask = arange(len) < N`` to the model).
    """
    check_mesh(mesh)
    data = np.asarray(data)
    num_data = data.shape[0]
    num_shards = mesh.shape[DATA_AXIS]
    padding = -num_data % num_shards
    if padding:
        data = np.concatenate([data, np.repeat(data[-1:], padding, axis=0)])
    # From the host straight to the shards: no device ever holds all the rows.
    return jax.device_put(data, NamedSharding(mesh, _row_spec(data.ndim))), num_data


class SpreadRows(np.ndarray):
    """What :attr:`Fit.data <dpgmm_ppl.Fit.data>` holds when the rows stayed spread
    over processes: their shape and dtype, NaN for every value, and no memory
    (a broadcast view of one NaN). Made by :func:`spread_rows`."""


def spread_rows(shape: Sequence[int], dtype: npt.DTypeLike) -> SpreadRows:
    """A :class:`SpreadRows` of ``shape`` and ``dtype``."""
    return np.broadcast_to(np.array(np.nan, dtype), tuple(shape)).view(SpreadRows)


def holds_rows(data: object) -> bool:
    """Whether this process holds every row of ``data`` (not a :class:`SpreadRows`
    or a global array spread over processes)."""
    return not (isinstance(data, SpreadRows) or is_multiprocess_array(data))


def spans_processes(mesh: Mesh) -> bool:
    """Whether ``mesh`` holds devices of other processes than this one."""
    me = jax.process_index()
    return any(device.process_index != me for device in mesh.devices.flat)


def is_multiprocess_array(data: object) -> TypeGuard[jax.Array]:
    """Whether ``data`` is a :class:`jax.Array` with rows on other processes' devices."""
    return isinstance(data, jax.Array) and not data.is_fully_addressable


def _allgather(value):
    """``value`` of every process, stacked in process order (NumPy, on the host)."""
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return np.asarray(value)[None]
    return np.asarray(multihost_utils.process_allgather(np.asarray(value)))


def _local_slots(mesh):
    """Positions along the ``"data"`` axis whose devices belong to this process, in order."""
    axis = mesh.axis_names.index(DATA_AXIS)
    devices = np.moveaxis(np.asarray(mesh.devices), axis, 0)
    devices = devices.reshape(devices.shape[0], -1)
    me = jax.process_index()
    return [i for i in range(devices.shape[0]) if any(d.process_index == me for d in devices[i])]


def _block_layout(mesh, name):
    """``(first slot, slots)`` of this process along the ``"data"`` axis; ValueError
    unless every process holds the same number of consecutive slots."""
    slots = _local_slots(mesh)
    first, count = (slots[0], len(slots)) if slots else (-1, 0)
    consecutive = slots == list(range(first, first + count))
    layouts = _allgather(np.array([first, count, consecutive], np.int64))
    if not (np.all(layouts[:, 2]) and np.all(layouts[:, 1] == layouts[0, 1]) and count):
        raise ValueError(
            f"{name}: the devices of every process must form one run of the same length "
            f"along the mesh's {DATA_AXIS!r} axis (use dpgmm_ppl.sharding.data_mesh()); "
            f"got (first position, positions) per process {layouts[:, :2].tolist()}"
        )
    return first, count


def process_local_data(rows: npt.ArrayLike, mesh: Mesh) -> jax.Array:
    """One global array of the rows that every process holds, for :func:`dpgmm_ppl.fit`.

    Every process calls it with its own rows and the same ``mesh``; the
    result is a :class:`jax.Array` sharded by rows over the mesh's
    ``"data"`` axis, built with :func:`jax.make_array_from_process_local_data`,
    of which each process holds only its own rows. The processes may hold
    different numbers of rows: each one's block is padded at its end with
    rows of NaN, which the fit leaves out (it counts the real rows of every
    process).

    Parameters
    ----------
    rows : array of shape (n, D) or (n,)
        This process's observations (at least one); integers are converted
        to floats (float32 unless x64 is on).
    mesh : jax.sharding.Mesh
        A mesh with a ``"data"`` axis over the devices of every process
        (:func:`data_mesh`), in which each process's devices are
        consecutive; the same in every process.

    Returns
    -------
    jax.Array
        Of shape ``(P * L,) + event_shape`` for ``P`` processes, ``L`` a
        multiple of each process's devices, at least its largest row count.

    Examples
    --------
    In each of two processes started by ``python -m dpgmm_ppl.launch
    --num-processes 2 -- python script.py``:

    >>> import jax, numpy as np, dpgmm_ppl
    >>> from dpgmm_ppl.sharding import data_mesh, process_local_data
    >>> mine = np.load(f"part-{jax.process_index()}.npy")  # doctest: +SKIP
    >>> data = process_local_data(mine, data_mesh())  # doctest: +SKIP
    >>> fit = dpgmm_ppl.fit(data, backend="map")  # doctest: +SKIP

    In one process it is the rows on the mesh:

    >>> data = process_local_data(np.arange(6.0), data_mesh())
    >>> np.asarray(data)[:6].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    from dpgmm_ppl._validation import check_data

    check_mesh(mesh)
    if is_multiprocess_array(rows):
        raise TypeError(
            "rows must be this process's own rows (a NumPy or local array), got a global "
            f"jax.Array of shape {rows.shape} spread over processes"
        )
    own: np.ndarray = check_data(
        rows, name="rows", min_points=1, dtype=jax.numpy.result_type(float)
    )
    _, slots = _block_layout(mesh, "mesh")
    shapes = _allgather(np.array([own.shape[0], own.ndim] + list(own.shape[1:2]), np.int64)
                        if own.ndim == 2 else np.array([own.shape[0], 1, 0], np.int64))
    if np.any(shapes[:, 1:] != shapes[0, 1:]):
        raise ValueError(
            "rows must have the same event shape in every process, got (rows, ndim, "
            f"columns) per process {shapes.tolist()}"
        )
    block = -(-int(shapes[:, 0].max()) // slots) * slots
    padded = np.full((block,) + own.shape[1:], np.nan, own.dtype)
    padded[: own.shape[0]] = own
    num_blocks = mesh.shape[DATA_AXIS] // slots
    return jax.make_array_from_process_local_data(
        NamedSharding(mesh, _row_spec(own.ndim)), padded, (num_blocks * block,) + own.shape[1:]
    )


class ProcessRows(NamedTuple):
    """This process's part of a global data set, and how the parts fit together.

    Made by :func:`process_rows` from a global array; the fit works from it
    and never gathers the rows of other processes.

    Attributes
    ----------
    rows : np.ndarray
        This process's real rows, in the working float dtype, on the host.
    row_counts : tuple of int
        The real rows of every block, in the order of the blocks along the
        ``"data"`` axis (one block per process).
    block : int
        This process's block.
    block_rows : int
        Rows per block of the global array given (real rows and padding).
    mesh : jax.sharding.Mesh
        The mesh of the global array.
    """

    rows: np.ndarray
    row_counts: tuple[int, ...]
    block: int
    block_rows: int
    mesh: Mesh

    @property
    def num_data(self) -> int:
        """Real rows in all the processes."""
        return int(sum(self.row_counts))

    @property
    def offset(self) -> int:
        """Index, in the whole data set, of this process's first row."""
        return int(sum(self.row_counts[: self.block]))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the whole data set (real rows only)."""
        return (self.num_data,) + self.rows.shape[1:]

    @property
    def ndim(self) -> int:
        return self.rows.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.rows.dtype

    def __len__(self) -> int:
        return self.num_data

    def mean_and_std(self, block_rows: int = 1 << 20) -> tuple[np.ndarray, np.ndarray]:
        """The columns' mean and standard deviation over every process's rows, in float64.

        The same two passes as on one host (the mean, then the squared
        deviations from it), each a sum per process gathered across processes.
        """
        total = _allgather(self.rows.sum(axis=0, dtype=np.float64)).sum(axis=0)
        mean = total / self.num_data
        squares = np.zeros_like(mean)
        for start in range(0, self.rows.shape[0], block_rows):
            deviation = self.rows[start : start + block_rows].astype(np.float64) - mean
            squares = squares + np.sum(deviation * deviation, axis=0)
        return mean, np.sqrt(_allgather(squares).sum(axis=0) / self.num_data)

    def strided_rows(self, max_rows: int) -> np.ndarray:
        """Every ``max(1, N // max_rows)``-th row of the whole data set, gathered in order.

        The rows the one-host code takes with ``data[::stride]``: at most
        about ``max_rows`` of them reach every process.
        """
        stride = max(1, self.num_data // max_rows)
        mine = self.rows[(-self.offset) % stride :: stride]
        largest = -(-max(self.row_counts) // stride)
        padded = np.full((largest,) + self.rows.shape[1:], np.nan, self.rows.dtype)
        padded[: mine.shape[0]] = mine
        counts = _allgather(np.int64(mine.shape[0]))
        gathered = _allgather(padded)
        order = np.argsort(_allgather(np.int64(self.block)))
        return np.concatenate([gathered[i][: counts[i]] for i in order])

    def to_global(self, local: np.ndarray, block_rows: int) -> jax.Array:
        """A global array, sharded like the data, of this process's ``block_rows`` rows ``local``."""
        num_blocks = len(self.row_counts)
        shape = (num_blocks * block_rows,) + local.shape[1:]
        sharding = NamedSharding(self.mesh, _row_spec(local.ndim))
        return jax.make_array_from_process_local_data(sharding, local, shape)


def process_rows(
    data: jax.Array, mesh: Mesh | None = None, *, name: str = "data"
) -> ProcessRows:
    """This process's rows of the global array ``data``, checked (see :class:`ProcessRows`).

    Raises ``TypeError`` or ``ValueError``, the same in every process, when
    ``data`` is not sharded by rows along a ``"data"`` axis, ``mesh`` is
    not its mesh, or a process's rows hold NaN or inf other than its trailing
    padding rows.
    """
    sharding = data.sharding
    if not isinstance(sharding, NamedSharding):
        raise TypeError(
            f"{name} must be sharded with a jax.sharding.NamedSharding "
            "(dpgmm_ppl.sharding.process_local_data makes one), "
            f"got {type(sharding).__name__}"
        )
    array_mesh = check_mesh(sharding.mesh)
    spec = tuple(sharding.spec) + (None,) * (data.ndim - len(sharding.spec))
    if data.ndim not in (1, 2) or spec[0] not in (DATA_AXIS, (DATA_AXIS,)) \
            or any(part is not None for part in spec[1:]):
        raise ValueError(
            f"{name} must be of shape (N,) or (N, D) with its rows split along the "
            f"{DATA_AXIS!r} axis, PartitionSpec({DATA_AXIS!r}, None); got shape "
            f"{data.shape} and {sharding.spec}"
        )
    if mesh is not None and check_mesh(mesh) != array_mesh:
        raise ValueError(
            f"mesh must be the mesh of {name} when {name} is a global array; got "
            f"{dict(mesh.shape)} over other devices than {name}'s {dict(array_mesh.shape)}"
        )
    if data.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {data.dtype}")
    first, slots = _block_layout(array_mesh, name)
    num_blocks = array_mesh.shape[DATA_AXIS] // slots
    block_rows = data.shape[0] // num_blocks
    shards: dict[int, jax.Shard] = {}
    for shard in data.addressable_shards:
        shards.setdefault(shard.index[0].start or 0, shard)
    parts = [np.asarray(shards[start].data) for start in sorted(shards)]
    # One device's shard is read in place: no second copy of this process's rows.
    local = parts[0] if len(parts) == 1 else np.concatenate(parts)
    local = local.astype(jax.numpy.result_type(float), copy=False)
    flat = local.reshape(local.shape[0], -1)
    padding = np.all(np.isnan(flat), axis=1)
    count = int(local.shape[0] - np.argmin(padding[::-1])) if not padding.all() else 0
    bad = np.flatnonzero(~np.all(np.isfinite(flat[:count]), axis=1))
    reports = _allgather(np.array(
        [first // slots, count, bad[0] if bad.size else -1], np.int64
    ))
    for process, (_, rows, row) in enumerate(reports):
        if row >= 0:
            raise ValueError(
                f"{name} must be finite; row {row} of process {process}'s rows is not "
                "(only rows that are NaN in every column, after all real rows, are padding)"
            )
        if rows == 0:
            raise ValueError(f"{name} must hold at least one real row in every process; "
                             f"process {process} holds none")
    order = np.argsort(reports[:, 0])
    return ProcessRows(
        rows=local[:count],
        row_counts=tuple(int(reports[i, 1]) for i in order),
        block=int(first // slots),
        block_rows=block_rows,
        mesh=array_mesh,
    )
