"""The one log-density that every backend evaluates.

:func:`build_log_density` returns a :class:`LogDensity`: jitted functions of
an unconstrained position *and the data*, built on NumPyro's own
``potential_energy``, ``log_density``, ``constrain_fn`` and ``unconstrain_fn``
(the pieces ``numpyro.infer.util.initialize_model`` is made of), so the
constraint transforms are NumPyro's. The data enter as an argument rather than a constant
closed over at compile time, so minibatches and sharded arrays can later flow
through the same compiled function.

This module builds densities and is where their names are imported from; the
type lives in :mod:`dpgmm_ppl._log_density` and the compiled functions,
shared by every density of one shape and chart, in
:mod:`dpgmm_ppl._density_program`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpy as np

# ``_chart_program.cache_clear()`` forgets every compiled program (tests/test_program_reuse.py).
from dpgmm_ppl._density_program import chart_program as _chart_program  # noqa: F401
from dpgmm_ppl._density_program import in_chart as _in_chart
from dpgmm_ppl._density_program import with_covariance_sites
from dpgmm_ppl._frame import Frame
from dpgmm_ppl._log_density import LATENT_SITES, PARAMETERIZATIONS, DensityParams, LogDensity
from dpgmm_ppl.covariance import covariance_structure, structure_for
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.sharding import ProcessRows, is_multiprocess_array, process_rows, shard_data

if TYPE_CHECKING:
    import jax

    from dpgmm_ppl.covariance import CovarianceStructure

__all__ = [
    "DensityParams", "LogDensity", "build_log_density", "bucket_size", "rechart",
    "LATENT_SITES", "PARAMETERIZATIONS",
]

#: The smallest bucket of rows (:func:`bucket_size`).
MIN_BUCKET_ROWS = 64

#: Buckets per doubling of the rows: padding adds at most 1/8 of them.
BUCKETS_PER_OCTAVE = 8


def bucket_size(num_rows: int) -> int:
    """The rows that ``num_rows`` points are padded to, so nearby sizes share programs.

    At least :data:`MIN_BUCKET_ROWS`; above it, the next of
    :data:`BUCKETS_PER_OCTAVE` evenly spaced sizes between two powers of
    two, so the padding is at most an eighth of the data.

    Examples
    --------
    >>> [bucket_size(n) for n in (10, 64, 65, 82, 150, 217, 218, 272, 1000)]
    [64, 64, 72, 88, 160, 224, 224, 288, 1024]
    """
    num_rows = int(num_rows)
    if num_rows <= MIN_BUCKET_ROWS:
        return MIN_BUCKET_ROWS
    octave = 1 << (num_rows.bit_length() - 1)
    step = max(1, octave // BUCKETS_PER_OCTAVE)
    return -(-num_rows // step) * step


#: Rows that :func:`_quantile_init` looks at: an evenly strided subset of larger data.
_INIT_ROWS = 100_000


def _quantile_init(data, num_components, priors, covariance):
    """A cheap, deterministic starting point computed on the host."""
    data = data[:: max(1, data.shape[0] // _INIT_ROWS)]
    levels = (np.arange(num_components) + 0.5) / num_components
    loc = np.quantile(data, levels, axis=0).astype(data.dtype)
    mode = np.asarray(priors.scale_rate) / (priors.scale_shape + 1.0)
    scale = np.broadcast_to(np.maximum(mode, 1e-3 * data.std(axis=0) + 1e-30), loc.shape)
    values = {
        "alpha": np.ones((), data.dtype),
        "weights": np.full(num_components, 1.0 / num_components, data.dtype),
        "loc": loc,
        "scale": scale.astype(data.dtype),
    }
    return with_covariance_sites(values, covariance)


def build_log_density(
    data: np.ndarray | jax.Array,
    *,
    num_components: int,
    priors: Priors | None = None,
    covariance: str | CovarianceStructure = "diag",
    parameterization: str = "centered",
    mesh: jax.sharding.Mesh | None = None,
    keep_data_on_host: bool = False,
    frame: Frame | None = None,
    rng_key: jax.Array | int | None = None,
    num_centered_sticks: int = 0,
    num_rows: int | None = None,
) -> LogDensity:
    """Trace the DP-GMM once on ``data`` and return its shared log-density.

    The log joint density of the model's sites is the same whatever the
    chart; ``parameterization`` only picks the coordinates of the
    unconstrained space in which the backends move, and so the potential
    (which carries the Jacobian of the chart).

    Parameters
    ----------
    data : Float[Array, "N"] or Float[Array, "N D"]
        Observations; validated by the caller. A global :class:`jax.Array`
        whose rows are spread over processes
        (:func:`dpgmm_ppl.sharding.process_local_data`) is read by each
        process for its own rows only: the priors and the frame come from
        sums gathered across processes, and :attr:`LogDensity.data` is a
        global array on that array's mesh (each process's block padded at
        its end and masked), or this process's rows with ``keep_data_on_host``.
    num_components : int
        Truncation level.
    priors : Priors, optional
        Hyperparameters; the ones left as ``None`` are set from ``data`` here,
        once, so that a minibatch later sees the same priors as the full data.
    covariance : {"diag", "spherical", "full"}
        The covariance structure of the components (:func:`~dpgmm_ppl.dpgmm`).
    parameterization : {"centered", "noncentered"}
        ``"centered"``: NumPyro's own transforms of each site (the weights
        through its stick-breaking bijection of the simplex).
        ``"noncentered"``: the weights through
        :class:`~dpgmm_ppl.reparam.NonCenteredStickBreaking`, coordinates
        ``log e_k`` whose prior does not depend on ``alpha``; the position
        holds ``weights_exponentials`` instead of ``weights``.
    mesh : jax.sharding.Mesh, optional
        Split the data's rows across the mesh's ``"data"`` axis
        (:func:`dpgmm_ppl.sharding.shard_data`); the jitted functions then
        run partitioned across its devices, the parameters replicated.
    keep_data_on_host : bool
        Keep ``data`` as a NumPy array instead of copying it to the device;
        for minibatch SVI, which streams batches of it.
    frame : Frame, optional
        The standardised frame; by default the data's own mean and standard
        deviation (:meth:`Frame.from_data <dpgmm_ppl._frame.Frame.from_data>`).
        ``Frame.identity(...)`` evaluates the model on the data as they are,
        for one density that serves many data sets of the same scale.
    rng_key : PRNGKey, optional
        Unused; kept so that callers can pass one key to every builder.
    num_centered_sticks : int
        With ``parameterization="noncentered"``: the first sticks that stay
        in the centred chart, site ``weights_logits``
        (:class:`~dpgmm_ppl.reparam.NonCenteredStickBreaking`, :func:`rechart`).
    num_rows : int, optional
        Pad the data on the device to this many rows (copies of the last
        one, masked out of the likelihood), so that data sets of nearby
        sizes share compiled programs (:func:`bucket_size`). The density is
        the same as without the padding, up to float rounding.

    Returns
    -------
    LogDensity

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> density = build_log_density(jnp.array([-1.0, 0.0, 2.5]), num_components=3)
    >>> value = density.potential_fn(density.init_position, density.data)
    >>> bool(jnp.isfinite(value))
    True
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(
            f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
        )
    covariance_structure(covariance)
    dtype = jnp.result_type(float)
    if isinstance(data, ProcessRows) or is_multiprocess_array(data):
        return _spread_over_processes(
            data, num_components=num_components, priors=priors, covariance=covariance,
            parameterization=parameterization, mesh=mesh, keep_data_on_host=keep_data_on_host,
            frame=frame, num_centered_sticks=num_centered_sticks, num_rows=num_rows,
        )
    host_data = np.asarray(data, dtype=dtype)
    priors = (Priors() if priors is None else priors).resolve(host_data)
    num_data = int(host_data.shape[0])
    covariance = structure_for(covariance, host_data.ndim - 1).name
    if frame is None:
        frame = Frame.from_data(host_data, covariance)
    standard_priors = frame.standardize_priors(priors)
    # Host data stay as they are (no second copy of a large array); the
    # minibatch runner standardises each batch as it gathers it.
    init_rows = host_data[:: max(1, num_data // _INIT_ROWS)]
    init_values = _quantile_init(
        frame.standardize_data(init_rows, dtype), num_components, standard_priors, covariance
    )
    if keep_data_on_host:
        data = host_data
    else:
        data = frame.standardize_data(host_data, dtype)
        if num_rows is not None and num_rows > num_data:
            # Copies of the last row, masked out of the likelihood.
            data = np.concatenate([data, np.repeat(data[-1:], num_rows - num_data, axis=0)])
        data = jnp.asarray(data)
    del host_data
    if mesh is not None:
        data, _ = shard_data(data, mesh)
    return _in_chart(
        data, num_data, priors, frame, init_values,
        covariance=covariance, num_components=num_components,
        parameterization=parameterization,
        num_centered_sticks=num_centered_sticks,
        keep_data_on_host=keep_data_on_host,
    )


def _spread_over_processes(
    data, *, num_components, priors, covariance, parameterization, mesh, keep_data_on_host,
    frame, num_centered_sticks, num_rows,
):
    """:func:`build_log_density` of rows spread over processes: each process
    reads and standardises only its own rows."""
    rows = data if isinstance(data, ProcessRows) else process_rows(data, mesh)
    dtype = np.dtype(jnp.result_type(float))
    priors = (Priors() if priors is None else priors).resolve(rows)
    covariance = structure_for(covariance, rows.ndim - 1).name
    if frame is None:
        frame = Frame.from_data(rows, covariance)
    init_rows = rows.strided_rows(_INIT_ROWS)
    init_values = _quantile_init(
        frame.standardize_data(init_rows, dtype), num_components,
        frame.standardize_priors(priors), covariance,
    )
    row_counts = None
    if keep_data_on_host:
        data = rows.rows
    else:
        slots = rows.mesh.shape["data"] // len(rows.row_counts)
        largest = max(rows.row_counts)
        # Each process pads its own block, to a bucket of its rows that
        # its devices divide evenly; the mask keeps the padding out.
        block_rows = bucket_size(largest) if num_rows is not None else largest
        block_rows = -(-block_rows // slots) * slots
        local = frame.standardize_data(rows.rows, dtype)
        if block_rows > local.shape[0]:
            local = np.concatenate(
                [local, np.repeat(local[-1:], block_rows - local.shape[0], axis=0)]
            )
        data = rows.to_global(local, block_rows)
        row_counts = rows.row_counts
    return _in_chart(
        data, rows.num_data, priors, frame, init_values,
        covariance=covariance, num_components=num_components,
        parameterization=parameterization, num_centered_sticks=num_centered_sticks,
        keep_data_on_host=keep_data_on_host, row_counts=row_counts, process_rows=rows,
    )


def rechart(density: LogDensity, num_centered_sticks: int) -> LogDensity:
    """The same model and data as ``density``, in another non-centred chart of the sticks.

    The first ``num_centered_sticks`` sticks keep NumPyro's own coordinates
    (``logit v_k``, site ``weights_logits``) and the rest are non-centred
    (``log e_k``, site ``weights_exponentials``); see
    :class:`~dpgmm_ppl.reparam.NonCenteredStickBreaking`. The data, frame and
    priors are ``density``'s, not copied; only the functions of the position
    are traced again. The log joint density of the model's sites is unchanged.

    Parameters
    ----------
    density : LogDensity
        Built with ``parameterization="noncentered"``.
    num_centered_sticks : int
        Sticks, from the first, in the centred chart.

    Returns
    -------
    LogDensity

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> x = jnp.array([-1.0, 0.0, 2.5])
    >>> density = build_log_density(x, num_components=3, parameterization="noncentered")
    >>> partial = rechart(density, 1)
    >>> sorted(partial.init_position)
    ['alpha', 'loc', 'scale', 'weights_exponentials', 'weights_logits']
    >>> point = partial.constrain_fn(partial.init_position)
    >>> same = density.unconstrain_fn(point)
    >>> bool(jnp.allclose(partial.log_joint_fn(partial.init_position, partial.data),
    ...                   density.log_joint_fn(same, density.data)))
    True
    """
    if density.parameterization != "noncentered":
        raise ValueError(
            "rechart needs a density built with parameterization='noncentered', got "
            f"{density.parameterization!r}"
        )
    init_values = density.standard_constrain_fn(density.init_position)
    return _in_chart(
        density.data, density.num_data, density.priors, density.frame, init_values,
        covariance=density.covariance, num_components=density.num_components,
        parameterization="noncentered",
        num_centered_sticks=num_centered_sticks,
        keep_data_on_host=density.data_in_data_units,
        row_counts=density.params.row_counts, process_rows=density.process_rows,
    )
