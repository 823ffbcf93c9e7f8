"""The one log-density that every backend evaluates.

:func:`build_log_density` returns a :class:`LogDensity`: jitted functions of
an unconstrained position *and the data*, built on NumPyro's own
``potential_energy``, ``log_density``, ``constrain_fn`` and ``unconstrain_fn``
(the pieces ``numpyro.infer.util.initialize_model`` is made of), so the
constraint transforms are NumPyro's. The data enter as an argument rather than a constant
closed over at compile time, so minibatches and sharded arrays can later flow
through the same compiled function.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.primitives import Messenger
from numpyro.infer.util import constrain_fn, log_density, potential_energy, unconstrain_fn


from dpgmm_ppl._frame import Frame
from dpgmm_ppl.initialization import kmeanspp_init
from dpgmm_ppl.model import COVARIANCE_TYPES, dpgmm
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.distributions import _safe_log
from dpgmm_ppl.reparam import (
    NonCenteredStickBreaking,
    coordinates_from_log_weights,
    exponentials_from_weights,
)
from dpgmm_ppl.sharding import ProcessRows, is_multiprocess_array, process_rows, shard_data

__all__ = [
    "DensityParams", "LogDensity", "build_log_density", "bucket_size", "rechart",
    "LATENT_SITES", "PARAMETERIZATIONS",
]

#: The latent sites of :func:`~dpgmm_ppl.dpgmm` with ``covariance="diag"``, in
#: a fixed order; ``"full"`` adds ``corr_cholesky`` and ``scale_tril``
#: (:attr:`LogDensity.latent_sites`).
LATENT_SITES = ("alpha", "weights", "loc", "scale")

#: Charts of the unconstrained space (see :func:`build_log_density`).
PARAMETERIZATIONS = ("centered", "noncentered")


class LogDensity(NamedTuple):
    """Model + data, compiled once and shared by the MAP, SVI and NUTS backends.

    Positions are dicts of unconstrained arrays keyed by site name. They live
    in a standardised frame (:attr:`frame`): the data are centred and scaled
    on the host before they become float32, the priors are mapped with them,
    and a position's ``loc`` coordinates are in units of the data's standard
    deviation. ``constrain_fn``, ``unconstrain_fn``, ``log_joint_fn`` and
    ``potential_fn`` speak data units, so nothing outside the backends'
    coordinates depends on the frame.

    Attributes
    ----------
    data : Array
        The observations in the frame, ``(x - frame.center) / frame.unit``,
        float32 unless x64 is enabled. This is the second argument of
        ``potential_fn`` and ``log_joint_fn``. Data kept on the host
        (``keep_data_on_host=True``) stay a NumPy array in data units, with
        no standardised copy; :meth:`rows_in_frame` maps the rows gathered
        from it.
    num_data : int
        Number of observations (without a sharded data set's padding rows).
    model_kwargs : dict
        Keyword arguments of :func:`~dpgmm_ppl.dpgmm` other than ``data``
        with which the model is evaluated on ``data``: ``num_components``,
        ``covariance`` and the priors mapped into the frame.
    parameterization : str
        The chart of the unconstrained space: ``"centered"`` or ``"noncentered"``.
    init_position : dict
        An unconstrained starting position from the data: locations at evenly
        spaced data quantiles, equal weights. The backends seed each chain or
        restart themselves (k-means++, :meth:`seed_position`).
    potential_fn : Callable[[dict, Array], Array]
        ``potential_fn(position, data)``: minus the log joint density of the
        unconstrained position (the data in data units), log-Jacobian of the
        transforms included. This is what NUTS and SVI evaluate.
    minibatch_potential_fn : Callable[[dict, Array], Array]
        ``minibatch_potential_fn(position, batch)``: the potential with the
        log-likelihood of ``batch`` (rows of ``data``) scaled by
        ``num_data / len(batch)``, an unbiased estimate of ``potential_fn``
        when the batch's rows are drawn uniformly from the data (stochastic VI).
        For rows spread over processes ``batch`` is ``(rows, mask, num_drawn)``:
        slots of which ``mask`` marks the drawn rows, the likelihood scaled by
        ``num_data / num_drawn``.
    log_joint_fn : Callable[[dict, Array], Array]
        ``log_joint_fn(position, data)``: the log joint density of the
        constrained values in data units, without the Jacobian; the same
        function of ``(alpha, weights, loc, scale)`` in either chart. MAP
        maximises it.
    constrain_fn : Callable[[dict], dict]
        Maps an unconstrained position to the constrained latent sites in
        data units (:attr:`latent_sites`, deterministic ones included).
    unconstrain_fn : Callable[[dict], dict]
        The inverse of ``constrain_fn``.
    trace_counts : dict
        How many times each shared function has been traced by JAX; a backend
        that re-traces per step or per chain shows up here.
    priors : Priors
        The resolved priors, in data units.
    frame : Frame
        Centre and unit of the standardised frame (float64 arrays).
    latent_sites : tuple of str
        The model's latent sites, deterministic ones included.
    standard_constrain_fn, standard_unconstrain_fn : Callable
        ``constrain_fn`` and ``unconstrain_fn`` in the frame instead of data
        units.
    num_centered_sticks : int
        With ``parameterization="noncentered"``: how many of the first
        sticks are in the centred chart all the same (:func:`rechart`).
    program : object
        The compiled functions that every density of this shape, chart and
        prior structure shares (built once per process).
    params : DensityParams
        This density's arguments to them: the priors in the frame, the
        frame, the number of real rows. :meth:`bind` swaps them.
    process_rows : ProcessRows or None
        For data spread over processes (:func:`dpgmm_ppl.sharding.process_local_data`):
        this process's rows and how every process's rows fit together.
        :attr:`data` is then a global array in which each process's block
        holds its rows then padding, or, kept on the host, this process's rows.
    """

    data: Any
    num_data: int
    model_kwargs: dict
    parameterization: str
    init_position: dict
    potential_fn: Callable
    minibatch_potential_fn: Callable
    log_joint_fn: Callable
    constrain_fn: Callable
    unconstrain_fn: Callable
    trace_counts: dict
    priors: Priors
    frame: Frame
    standard_unconstrain_fn: Callable
    standard_constrain_fn: Callable
    latent_sites: tuple = LATENT_SITES
    data_in_data_units: bool = False
    num_centered_sticks: int = 0
    program: Any = None
    params: Any = None
    process_rows: Any = None

    @property
    def num_components(self) -> int:
        return self.model_kwargs["num_components"]

    @property
    def covariance(self) -> str:
        """The covariance structure of the components (see :func:`~dpgmm_ppl.dpgmm`)."""
        return self.model_kwargs["covariance"]

    def rows_in_frame(self, rows):
        """Rows gathered from :attr:`data`, in the frame.

        Host data are mapped as they are gathered, in place: ``rows`` must be
        a fresh array (fancy indexing makes one), so that a chunk of batches
        costs no second copy. The arithmetic is in the data's float type,
        with the centre rounded to it: host data of that type already carry
        that rounding, and the subtraction is exact for points near the
        centre. Device data are already in the frame and come back as they are.
        """
        if not self.data_in_data_units:
            return rows
        dtype = self.data.dtype
        np.subtract(rows, self.frame.center.astype(dtype), out=rows)
        np.divide(rows, self.frame.unit.astype(dtype), out=rows)
        return rows

    def seed_position(self, rng_key, data):
        """An unconstrained start seeded by k-means++ on the real rows of ``data``.

        ``data`` is :attr:`data` (or rows of it for host data): rows past
        :attr:`num_data`, the padding, are never picked. Traceable; the
        backends call it once per restart or chain.
        """
        row_counts = None if self.params is None else self.params.row_counts
        seeded = kmeanspp_init(
            rng_key, data, self.num_components, self.model_kwargs["priors"],
            num_data=self.num_data, row_counts=row_counts,
        )
        return self.standard_unconstrain_fn(seeded)

    def bind(self, params):
        """This density with other arguments (traced ones, inside a compiled
        program that serves every data set of its shape).

        Inside the program, :attr:`num_data` is the traced number of real rows.
        """
        return _bound(
            self.program, params,
            data=self.data, num_data=params.num_data, priors=self.priors, frame=params.frame,
            init_position=self.init_position, covariance=self.covariance,
            num_components=self.num_components, parameterization=self.parameterization,
            num_centered_sticks=self.num_centered_sticks,
            data_in_data_units=self.data_in_data_units, process_rows=self.process_rows,
        )


#: The smallest bucket of rows (:func:`bucket_size`).
MIN_BUCKET_ROWS = 64

#: Buckets per doubling of the rows: padding adds at most 1/8 of them.
BUCKETS_PER_OCTAVE = 8


def bucket_size(num_rows):
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


class _ScaleSite(Messenger):
    """Scale one site's log density (``handlers.scale`` scales every site)."""

    def __init__(self, fn, name, scale):
        self.name, self.scale = name, scale
        super().__init__(fn)

    def process_message(self, msg):
        if msg["name"] == self.name:
            msg["scale"] = self.scale if msg.get("scale") is None else self.scale * msg["scale"]


def _counted(name, counts):
    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args):
            counts[name] += 1  # runs at trace time only, never inside XLA
            return fn(*args)

        return wrapper

    return decorate


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


def with_covariance_sites(values, covariance):
    """Starting values of the ``"diag"`` sites adapted to another covariance structure.

    ``"spherical"``: the geometric mean of each component's scales.
    ``"full"``: uncorrelated, ``corr_cholesky`` the identity. Values that
    already have the structure's sites are returned as they are.
    """
    loc = values["loc"]
    if np.ndim(loc) < 2 or covariance == "diag":
        return values
    xp = np if isinstance(loc, np.ndarray) else jnp
    values = dict(values)
    if covariance == "spherical" and np.ndim(values["scale"]) == np.ndim(loc):
        values["scale"] = xp.exp(xp.mean(xp.log(values["scale"]), axis=-1))
    elif covariance == "full" and loc.shape[-1] > 1 and "corr_cholesky" not in values:
        eye = xp.eye(loc.shape[-1], dtype=loc.dtype)
        values["corr_cholesky"] = xp.broadcast_to(eye, loc.shape + loc.shape[-1:])
    return values


def _site_kinds(model, data, model_kwargs):
    """``{site name: "latent" | "deterministic" | "observed"}`` of one trace of ``model``, in order.

    The model runs under :func:`jax.eval_shape`: its draws (Gamma and Beta
    samplers among them) are traced, never compiled or run.
    """
    kinds = {}

    def trace_model():
        trace = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace(
            data=data, **model_kwargs
        )
        for name, site in trace.items():
            if site["type"] == "deterministic":
                kinds[name] = "deterministic"
            elif site["type"] == "sample":
                kinds[name] = "observed" if site["is_observed"] else "latent"
        return jnp.zeros(())

    jax.eval_shape(trace_model)
    return kinds


def build_log_density(
    data,
    *,
    num_components,
    priors=None,
    covariance="diag",
    parameterization="centered",
    mesh=None,
    keep_data_on_host=False,
    frame=None,
    rng_key=None,
    num_centered_sticks=0,
    num_rows=None,
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
    if covariance not in COVARIANCE_TYPES:
        raise ValueError(f"covariance must be one of {COVARIANCE_TYPES}, got {covariance!r}")
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
    if host_data.ndim == 1:
        covariance = "diag"  # the three structures coincide for scalar data
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
    if rows.ndim == 1:
        covariance = "diag"
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


def rechart(density, num_centered_sticks):
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


class DensityParams(NamedTuple):
    """What varies between densities of one shape: the arguments of its compiled functions.

    A pytree: two fits whose data have the same shape and whose priors have
    the same structure share every compiled program, with these as arguments.

    Attributes
    ----------
    priors : Priors
        The priors mapped into the frame.
    frame : Frame
        Centre and unit of the standardised frame.
    num_data : Array
        The number of real rows (int32); rows past it are padding, kept out
        of the likelihood by a mask.
    data_log_jacobian : Array
        ``num_data * sum(log(unit))``: the data's map to data units.
    log_joint_offset : Array
        The log joint in data units minus the log joint in the frame.
    row_counts : Array or None
        Data spread over processes: the real rows of each process's block
        (int32), which are its first rows; ``None``: the first ``num_data``
        rows are the real ones.
    """

    priors: Priors
    frame: Frame
    num_data: Any
    data_log_jacobian: Any
    log_joint_offset: Any
    row_counts: Any = None


class _TraceCounts(Mapping):
    """The traces of a shared program's functions since one density was built."""

    def __init__(self, counts):
        self._counts = counts
        self._baseline = dict(counts)

    def __getitem__(self, name):
        return self._counts[name] - self._baseline[name]

    def __iter__(self):
        return iter(self._counts)

    def __len__(self):
        return len(self._counts)

    def __repr__(self):
        return repr(dict(self))


class _ChartProgram(NamedTuple):
    """The jitted functions of one chart, shared by every density of its shape."""

    potential: Callable
    minibatch_potential: Callable
    log_joint: Callable
    standard_constrain: Callable
    constrain: Callable
    standard_unconstrain: Callable
    unconstrain: Callable
    latent_sites: tuple
    counts: dict
    init_unconstrain: Callable
    key: tuple


def _params(priors, frame, num_data, num_components, covariance, dtype, row_counts=None):
    """The :class:`DensityParams` of a density, as arrays of ``dtype``."""
    as_array = lambda value: None if value is None else np.asarray(value, dtype)
    standard = frame.standardize_priors(priors)
    standard = jax.tree_util.tree_map(as_array, standard)
    return DensityParams(
        priors=standard,
        frame=Frame(*(np.asarray(part, dtype) for part in frame)),
        num_data=np.asarray(num_data, np.int32),
        data_log_jacobian=as_array(num_data * frame.log_unit),
        log_joint_offset=as_array(
            frame.log_joint_offset(
                num_data, num_components, covariance, priors.fixed_scale is not None
            )
        ),
        row_counts=None if row_counts is None else np.asarray(row_counts, np.int32),
    )


def _example_priors(event_shape, has_fixed_scale, corr_concentration):
    """Resolved priors of the right structure, for tracing the model's sites."""
    unit = np.ones(event_shape, np.float32)
    return Priors(
        fixed_scale=unit if has_fixed_scale else None,
        corr_concentration=corr_concentration,
    ).resolve(np.stack([-unit, unit]))


@functools.lru_cache(maxsize=64)
def _chart_program(
    event_shape, dtype, num_components, covariance, parameterization, num_centered_sticks,
    has_fixed_scale, corr_concentration,
):
    """The jitted functions of the position for one shape and chart, built once per process.

    Everything that differs between data sets of this shape (the data, the
    priors, the frame, the number of rows) is an argument, so fits of other
    data reuse what the first one compiled.
    """
    if parameterization == "noncentered":
        reparam = NonCenteredStickBreaking(num_centered=num_centered_sticks)
        model = handlers.reparam(dpgmm, config={"weights": reparam})
    else:
        model = dpgmm
    # The transforms do not depend on the data: one dummy row keeps those traces cheap.
    dummy = jnp.zeros((1,) + event_shape, dtype)
    example_kwargs = {
        "num_components": num_components,
        "covariance": covariance,
        "priors": _example_priors(event_shape, has_fixed_scale, corr_concentration),
    }
    sampled_sites = [
        name for name, kind in _site_kinds(model, dummy, example_kwargs).items() if kind == "latent"
    ]
    latent_sites = tuple(
        name for name, kind in _site_kinds(dpgmm, dummy, example_kwargs).items()
        if kind != "observed"
    )
    counts = {
        "potential_fn": 0, "minibatch_potential_fn": 0, "log_joint_fn": 0, "constrain_fn": 0
    }

    def model_kwargs(params):
        return {"num_components": num_components, "covariance": covariance, "priors": params.priors}

    def data_kwargs(data, params):
        # Rows past ``num_data`` pad the data to a shape shared with other
        # data sets, or to a multiple of the devices of a mesh; rows spread
        # over processes are padded at the end of each process's block.
        index = jnp.arange(data.shape[0])
        if params.row_counts is None:
            return {"data": data, "mask": index < params.num_data}
        block = data.shape[0] // params.row_counts.shape[0]
        return {"data": data, "mask": index % block < params.row_counts[index // block]}

    @jax.jit
    @_counted("potential_fn", counts)
    def potential(position, data, params):
        kwargs = {**data_kwargs(data, params), **model_kwargs(params)}
        return potential_energy(model, (), kwargs, position) + params.data_log_jacobian

    @jax.jit
    @_counted("minibatch_potential_fn", counts)
    def minibatch_potential(position, batch, params):
        if isinstance(batch, tuple):
            # Slots of a batch spread over processes, ``mask`` marking the
            # ``num_drawn`` drawn ones: the likelihood is scaled by N over them.
            rows, mask, num_drawn = batch
            kwargs = {"data": rows, "mask": mask, **model_kwargs(params)}
            scaled = _ScaleSite(model, "obs", params.num_data / num_drawn)
            return potential_energy(scaled, (), kwargs, position) + params.data_log_jacobian
        kwargs = {"data": batch, "num_data": params.num_data, **model_kwargs(params)}
        return potential_energy(model, (), kwargs, position) + params.data_log_jacobian

    @jax.jit
    @_counted("constrain_fn", counts)
    def standard_constrain(position, params):
        values = constrain_fn(
            model, (), {"data": dummy, **model_kwargs(params)}, position,
            return_deterministic=True,
        )
        return {name: values[name] for name in latent_sites}

    @jax.jit
    @_counted("constrain_fn", counts)
    def constrain(position, params):
        return params.frame.to_data_units(standard_constrain(position, params), xp=jnp)

    @jax.jit
    @_counted("log_joint_fn", counts)
    def log_joint(position, data, params):
        values = standard_constrain(position, params)
        kwargs = {**data_kwargs(data, params), **model_kwargs(params)}
        log_joint_value, _ = log_density(dpgmm, (), kwargs, values)
        return log_joint_value + params.log_joint_offset

    def standard_unconstrain(values, params):
        # Starts seeded for diagonal covariances (k-means++) fit every structure.
        values = with_covariance_sites(dict(values), covariance)
        if parameterization == "noncentered" and num_components > 1:
            # ``log_weights``, when given, keep the weights that underflow float32.
            log_weights = values.pop("log_weights", None)
            centered = min(num_centered_sticks, num_components - 1)
            if log_weights is None and not centered:
                values["weights_exponentials"] = exponentials_from_weights(
                    values["weights"], values["alpha"]
                )
            else:
                if log_weights is None:
                    log_weights = _safe_log(values["weights"])
                values["weights_logits"], values["weights_exponentials"] = (
                    coordinates_from_log_weights(log_weights, values["alpha"], centered)
                )
        sampled = {name: values[name] for name in sampled_sites}
        kwargs = {"data": dummy, **model_kwargs(params)}
        return unconstrain_fn(model, (), kwargs, sampled)

    @jax.jit
    def unconstrain(values, params):
        values = with_covariance_sites(dict(values), covariance)
        return standard_unconstrain(params.frame.from_data_units(values, xp=jnp), params)

    return _ChartProgram(
        potential=potential,
        minibatch_potential=minibatch_potential,
        log_joint=log_joint,
        standard_constrain=standard_constrain,
        constrain=constrain,
        standard_unconstrain=standard_unconstrain,
        unconstrain=unconstrain,
        latent_sites=latent_sites,
        counts=counts,
        init_unconstrain=jax.jit(standard_unconstrain),
        key=(
            event_shape, str(dtype), num_components, covariance, parameterization,
            num_centered_sticks, has_fixed_scale, corr_concentration,
        ),
    )


def _in_chart(
    data, num_data, priors, frame, init_values, *,
    covariance, num_components, parameterization, num_centered_sticks, keep_data_on_host,
    row_counts=None, process_rows=None,
):
    """The density of ``data`` in one chart: the shared program and this data set's arguments."""
    num_centered = (
        min(num_centered_sticks, num_components - 1) if parameterization == "noncentered" else 0
    )
    dtype = np.dtype(data.dtype)
    program = _chart_program(
        tuple(data.shape[1:]), dtype, num_components, covariance, parameterization,
        num_centered, priors.fixed_scale is not None, priors.corr_concentration,
    )
    params = _params(priors, frame, num_data, num_components, covariance, dtype, row_counts)
    return _bound(
        program, params,
        data=data, num_data=num_data, priors=priors, frame=frame,
        init_position=program.init_unconstrain(init_values, params),
        covariance=covariance, num_components=num_components,
        parameterization=parameterization, num_centered_sticks=num_centered,
        data_in_data_units=keep_data_on_host, process_rows=process_rows,
    )


def _bound(program, params, *, data, num_data, priors, frame, init_position, covariance,
           num_components, parameterization, num_centered_sticks, data_in_data_units,
           process_rows=None):
    """A :class:`LogDensity` whose functions evaluate ``program`` at ``params``."""
    return LogDensity(
        data=data,
        num_data=num_data,
        model_kwargs={
            "num_components": num_components, "priors": params.priors, "covariance": covariance
        },
        parameterization=parameterization,
        init_position=init_position,
        potential_fn=lambda position, data: program.potential(position, data, params),
        minibatch_potential_fn=lambda position, batch: program.minibatch_potential(
            position, batch, params
        ),
        log_joint_fn=lambda position, data: program.log_joint(position, data, params),
        constrain_fn=lambda position: program.constrain(position, params),
        unconstrain_fn=lambda values: program.unconstrain(values, params),
        trace_counts=_TraceCounts(program.counts),
        priors=priors,
        frame=frame,
        standard_unconstrain_fn=lambda values: program.standard_unconstrain(values, params),
        standard_constrain_fn=lambda position: program.standard_constrain(position, params),
        latent_sites=program.latent_sites,
        data_in_data_units=data_in_data_units,
        num_centered_sticks=num_centered_sticks,
        program=program,
        params=params,
        process_rows=process_rows,
    )
