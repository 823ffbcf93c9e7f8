"""The type of the shared log-density: :class:`LogDensity` and its arguments.

A :class:`LogDensity` is a compiled program (the functions of the position
shared by every density of one shape and chart, :mod:`dpgmm_ppl._density_program`)
bound to one data set's :class:`DensityParams`. :func:`bound` makes one;
:func:`~dpgmm_ppl.density.build_log_density` is where densities are built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dpgmm_ppl._frame import Frame
from dpgmm_ppl.initialization import kmeanspp_init
from dpgmm_ppl.priors import Priors

if TYPE_CHECKING:
    import jax

    from dpgmm_ppl._density_program import ChartProgram

__all__ = ["LATENT_SITES", "PARAMETERIZATIONS", "DensityParams", "LogDensity", "bound"]

#: The latent sites of :func:`~dpgmm_ppl.dpgmm` with ``covariance="diag"``, in
#: a fixed order; ``"full"`` adds ``corr_cholesky`` and ``scale_tril``
#: (:attr:`LogDensity.latent_sites`).
LATENT_SITES = ("alpha", "weights", "loc", "scale")

#: Charts of the unconstrained space (see :func:`~dpgmm_ppl.density.build_log_density`).
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
        sticks are in the centred chart all the same (:func:`~dpgmm_ppl.density.rechart`).
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
    trace_counts: Mapping[str, int]
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

    def rows_in_frame(self, rows: np.ndarray) -> np.ndarray:
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

    def seed_position(
        self, rng_key: jax.Array, data: jax.Array | np.ndarray,
        num_active: int | jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        """An unconstrained start seeded by k-means++ on the real rows of ``data``.

        ``data`` is :attr:`data` (or rows of it for host data): rows past
        :attr:`num_data`, the padding, are never picked. With ``num_active``
        only that many components take points, the rest start empty
        (:func:`~dpgmm_ppl.initialization.kmeanspp_init`). Traceable; the
        backends call it once per restart or chain.
        """
        row_counts = None if self.params is None else self.params.row_counts
        seeded = kmeanspp_init(
            rng_key, data, self.num_components, self.model_kwargs["priors"],
            num_data=self.num_data, row_counts=row_counts, num_active=num_active,
        )
        return self.standard_unconstrain_fn(seeded)

    def bind(self, params: DensityParams) -> LogDensity:
        """This density with other arguments (traced ones, inside a compiled
        program that serves every data set of its shape).

        Inside the program, :attr:`num_data` is the traced number of real rows.
        """
        return bound(
            self.program, params,
            data=self.data, num_data=params.num_data, priors=self.priors, frame=params.frame,
            init_position=self.init_position, covariance=self.covariance,
            num_components=self.num_components, parameterization=self.parameterization,
            num_centered_sticks=self.num_centered_sticks,
            data_in_data_units=self.data_in_data_units, process_rows=self.process_rows,
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
    """The traces of a shared program's functions since one density was built.

    A live, read-only view: the program's counters less their values when the
    density was bound, so that a density shows its own fit's traces only.
    """

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


def bound(
    program: ChartProgram,
    params: DensityParams,
    *,
    data: Any,
    num_data: Any,
    priors: Priors,
    frame: Frame,
    init_position: dict[str, Any],
    covariance: str,
    num_components: int,
    parameterization: str,
    num_centered_sticks: int,
    data_in_data_units: bool,
    process_rows: Any = None,
) -> LogDensity:
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
