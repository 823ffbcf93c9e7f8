"""The compiled functions of the position, one program per shape and chart.

:func:`chart_program` jits the potential, the minibatch potential, the log
joint and the maps between constrained and unconstrained values once per
process for each data shape, chart and prior structure; everything that
differs between data sets of that shape (the data, the priors, the frame, the
number of rows) is an argument, a :class:`~dpgmm_ppl._log_density.DensityParams`.
:func:`in_chart` binds one data set's arguments to it. The counters of
:attr:`ChartProgram.counts` tick each time JAX traces one of the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers
from numpyro.infer.util import constrain_fn, log_density, potential_energy, unconstrain_fn
from numpyro.primitives import Messenger

from dpgmm_ppl._frame import Frame
from dpgmm_ppl._log_density import DensityParams, bound
from dpgmm_ppl.covariance import covariance_structure
from dpgmm_ppl.distributions import _safe_log
from dpgmm_ppl.model import dpgmm
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.reparam import (
    NonCenteredStickBreaking,
    coordinates_from_log_weights,
    exponentials_from_weights,
)

if TYPE_CHECKING:
    from dpgmm_ppl._log_density import LogDensity
    from dpgmm_ppl.covariance import CovarianceStructure

__all__ = ["ChartProgram", "chart_program", "in_chart", "with_covariance_sites"]

#: The functions whose traces :attr:`ChartProgram.counts` counts, in the order
#: :attr:`~dpgmm_ppl._log_density.LogDensity.trace_counts` lists them.
TRACED_FUNCTIONS = ("potential_fn", "minibatch_potential_fn", "log_joint_fn", "constrain_fn")


def with_covariance_sites(
    values: dict[str, Any], covariance: str | CovarianceStructure
) -> dict[str, Any]:
    """Starting values of the ``"diag"`` sites adapted to another covariance structure.

    The structure (a name or :class:`~dpgmm_ppl.covariance.CovarianceStructure`)
    says how (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.starting_values`):
    ``"spherical"`` takes the geometric mean of each component's scales,
    ``"full"`` starts uncorrelated, ``corr_cholesky`` the identity. Values
    that already have the structure's sites are returned as they are.
    """
    return covariance_structure(covariance).starting_values(values)


class ChartProgram(NamedTuple):
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


class _Chart(NamedTuple):
    """What the functions of one chart are built from: the model in that chart,
    its sites and the options fixed at compile time."""

    model: Callable
    dummy: Any
    num_components: int
    covariance: str
    parameterization: str
    num_centered_sticks: int
    sampled_sites: tuple
    latent_sites: tuple

    def model_kwargs(self, params):
        return {
            "num_components": self.num_components, "covariance": self.covariance,
            "priors": params.priors,
        }


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


def _example_priors(event_shape, has_fixed_scale, corr_concentration):
    """Resolved priors of the right structure, for tracing the model's sites."""
    unit = np.ones(event_shape, np.float32)
    return Priors(
        fixed_scale=unit if has_fixed_scale else None,
        corr_concentration=corr_concentration,
    ).resolve(np.stack([-unit, unit]))


def _chart(
    event_shape, dtype, num_components, covariance, parameterization, num_centered_sticks,
    has_fixed_scale, corr_concentration,
):
    """The model in the chart and its sites, traced on one dummy row."""
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
    return _Chart(
        model, dummy, num_components, covariance, parameterization, num_centered_sticks,
        sampled_sites, latent_sites,
    )


def _data_kwargs(data, params):
    # Rows past ``num_data`` pad the data to a shape shared with other
    # data sets, or to a multiple of the devices of a mesh; rows spread
    # over processes are padded at the end of each process's block.
    index = jnp.arange(data.shape[0])
    if params.row_counts is None:
        return {"data": data, "mask": index < params.num_data}
    block = data.shape[0] // params.row_counts.shape[0]
    return {"data": data, "mask": index % block < params.row_counts[index // block]}


def _potentials(chart, counts):
    """The jitted potential of the data and of a minibatch of them."""
    model, model_kwargs = chart.model, chart.model_kwargs

    @jax.jit
    @_counted("potential_fn", counts)
    def potential(position, data, params):
        kwargs = {**_data_kwargs(data, params), **model_kwargs(params)}
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

    return potential, minibatch_potential


def _constrained(chart, counts):
    """The jitted maps to the constrained sites (in the frame, in data units) and the log joint."""
    covariance, model_kwargs = chart.covariance, chart.model_kwargs

    @jax.jit
    @_counted("constrain_fn", counts)
    def standard_constrain(position, params):
        values = constrain_fn(
            chart.model, (), {"data": chart.dummy, **model_kwargs(params)}, position,
            return_deterministic=True,
        )
        return {name: values[name] for name in chart.latent_sites}

    @jax.jit
    @_counted("constrain_fn", counts)
    def constrain(position, params):
        return params.frame.to_data_units(
            standard_constrain(position, params), covariance, xp=jnp
        )

    @jax.jit
    @_counted("log_joint_fn", counts)
    def log_joint(position, data, params):
        values = standard_constrain(position, params)
        kwargs = {**_data_kwargs(data, params), **model_kwargs(params)}
        log_joint_value, _ = log_density(dpgmm, (), kwargs, values)
        return log_joint_value + params.log_joint_offset

    return standard_constrain, constrain, log_joint


def _sampled_values(chart, values):
    """The values of the chart's sampled sites, from constrained values in the frame."""
    # Starts seeded for diagonal covariances (k-means++) fit every structure.
    values = with_covariance_sites(dict(values), chart.covariance)
    num_components = chart.num_components
    if chart.parameterization == "noncentered" and num_components > 1:
        # ``log_weights``, when given, keep the weights that underflow float32.
        log_weights = values.pop("log_weights", None)
        centered = min(chart.num_centered_sticks, num_components - 1)
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
    return {name: values[name] for name in chart.sampled_sites}


def _unconstrainers(chart):
    """The maps from constrained values (in the frame; in data units, jitted) to a position."""
    covariance = chart.covariance

    def standard_unconstrain(values, params):
        kwargs = {"data": chart.dummy, **chart.model_kwargs(params)}
        return unconstrain_fn(chart.model, (), kwargs, _sampled_values(chart, values))

    @jax.jit
    def unconstrain(values, params):
        values = with_covariance_sites(dict(values), covariance)
        return standard_unconstrain(
            params.frame.from_data_units(values, covariance, xp=jnp), params
        )

    return standard_unconstrain, unconstrain


@functools.lru_cache(maxsize=64)
def chart_program(
    event_shape: tuple[int, ...],
    dtype: np.dtype,
    num_components: int,
    covariance: str,
    parameterization: str,
    num_centered_sticks: int,
    has_fixed_scale: bool,
    corr_concentration: Any,
) -> ChartProgram:
    """The jitted functions of the position for one shape and chart, built once per process.

    Everything that differs between data sets of this shape (the data, the
    priors, the frame, the number of rows) is an argument, so fits of other
    data reuse what the first one compiled.
    """
    key = (
        event_shape, str(dtype), num_components, covariance, parameterization,
        num_centered_sticks, has_fixed_scale, corr_concentration,
    )
    chart = _chart(
        event_shape, dtype, num_components, covariance, parameterization, num_centered_sticks,
        has_fixed_scale, corr_concentration,
    )
    counts = dict.fromkeys(TRACED_FUNCTIONS, 0)
    potential, minibatch_potential = _potentials(chart, counts)
    standard_constrain, constrain, log_joint = _constrained(chart, counts)
    standard_unconstrain, unconstrain = _unconstrainers(chart)
    return ChartProgram(
        potential=potential,
        minibatch_potential=minibatch_potential,
        log_joint=log_joint,
        standard_constrain=standard_constrain,
        constrain=constrain,
        standard_unconstrain=standard_unconstrain,
        unconstrain=unconstrain,
        latent_sites=chart.latent_sites,
        counts=counts,
        init_unconstrain=jax.jit(standard_unconstrain),
        key=key,
    )


def _params(priors, frame, num_data, num_components, covariance, dtype, row_counts=None):
    """The :class:`~dpgmm_ppl._log_density.DensityParams` of a density, as arrays of ``dtype``."""
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


def in_chart(
    data: Any,
    num_data: Any,
    priors: Priors,
    frame: Frame,
    init_values: dict[str, Any],
    *,
    covariance: str,
    num_components: int,
    parameterization: str,
    num_centered_sticks: int,
    keep_data_on_host: bool,
    row_counts: Any = None,
    process_rows: Any = None,
) -> LogDensity:
    """The density of ``data`` in one chart: the shared program and this data set's arguments."""
    num_centered = (
        min(num_centered_sticks, num_components - 1) if parameterization == "noncentered" else 0
    )
    dtype = np.dtype(data.dtype)
    program = chart_program(
        tuple(data.shape[1:]), dtype, num_components, covariance, parameterization,
        num_centered, priors.fixed_scale is not None, priors.corr_concentration,
    )
    params = _params(priors, frame, num_data, num_components, covariance, dtype, row_counts)
    return bound(
        program, params,
        data=data, num_data=num_data, priors=priors, frame=frame,
        init_position=program.init_unconstrain(init_values, params),
        covariance=covariance, num_components=num_components,
        parameterization=parameterization, num_centered_sticks=num_centered,
        data_in_data_units=keep_data_on_host, process_rows=process_rows,
    )
