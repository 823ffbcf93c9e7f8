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
Start every process with :func:`jax.distributed.initialize` (coordinator
address, number of processes, process id; on managed clusters it finds them
itself), then build the mesh over all devices of all processes,
``data_mesh(jax.devices())``, and run the same program in every process.
Where this stands: :func:`dpgmm_ppl.fit` takes the whole data set in every
process (it converts ``data`` to a NumPy array before placing it on the
mesh). Tried with two processes of two CPU devices each on one machine, SVI
ran; MAP and NUTS stopped with JAX's error about arrays that span devices
other processes own (docs/scaling.md). A fit that takes each process's own
rows, built with :func:`jax.make_array_from_process_local_data`, is not done.

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

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DATA_AXIS", "data_mesh", "shard_data"]

#: The mesh axis along which the data plate is split.
DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """A one-axis mesh named ``"data"`` over ``devices`` (default: all of them).

    Parameters
    ----------
    devices : sequence of jax.Device, optional
        The devices to split the data across; ``jax.devices()`` by default.

    Returns
    -------
    jax.sharding.Mesh
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must name at least one device, got an empty sequence")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_mesh(mesh):
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


def shard_data(data, mesh):
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
    spec = PartitionSpec(DATA_AXIS, *([None] * (data.ndim - 1)))
    # From the host straight to the shards: no device ever holds all the rows.
    return jax.device_put(data, NamedSharding(mesh, spec)), num_data
