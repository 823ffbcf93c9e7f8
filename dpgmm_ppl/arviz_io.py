"""Conversion of a :class:`~dpgmm_ppl.Fit` to ArviZ data."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dpgmm_ppl._arviz_compat import make_inference_data
from dpgmm_ppl.mixtures import mixture_log_density
from dpgmm_ppl.predictive import OBSERVED_SITE

if TYPE_CHECKING:
    from dpgmm_ppl.result import Fit

__all__ = [
    "FORMAT_VERSION", "MAX_LOG_LIKELIHOOD_VALUES", "PERMUTATION_STAT", "fit_metadata",
    "fit_to_arviz",
]

#: Version of the layout of saved fits; bumped when it changes incompatibly.
FORMAT_VERSION = 1

#: ``sample_stats`` variable holding ``Fit.permutations``, dims (chain, draw, component).
PERMUTATION_STAT = "permutation"

#: Above this many (chain x draw x point) values, ``log_likelihood="auto"`` leaves the
#: pointwise group out (4e7 float32 values are 160 MB).
MAX_LOG_LIKELIHOOD_VALUES = 40_000_000

#: Dims of a site after its sample dims, by the number of its own axes: a
#: scalar, one value per component, a vector per component (``loc``). The
#: covariance structure names the dims of its own sites
#: (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.site_dims`).
_SITE_DIMS = ((), ("component",), ("component", "dim"), ("component", "dim", "dim_bis"))


def _dataset(variables, coords):
    import xarray as xr

    return xr.Dataset(
        {name: (dims, np.asarray(value)) for name, (dims, value) in variables.items()},
        coords=coords,
    )


def _site_dims(lead, value, name=None, structure_dims=None):
    if structure_dims and name in structure_dims:
        return lead + tuple(structure_dims[name])
    return lead + _SITE_DIMS[np.ndim(value) - len(lead)]


def _structure_dims(fit):
    """The dims of the covariance structure's sites, after the sample dims; none
    (dims by each site's number of axes) for a structure not registered here."""
    from dpgmm_ppl.covariance import COVARIANCE_STRUCTURES

    if fit.covariance not in COVARIANCE_STRUCTURES:
        return {}
    event_dims = ("dim",) if fit.dim is not None else ()
    return COVARIANCE_STRUCTURES[fit.covariance].site_dims(event_dims)


def _include_log_likelihood(fit, log_likelihood):
    if log_likelihood not in (True, False, "auto"):
        raise ValueError(
            f"log_likelihood must be True, False or 'auto', got {log_likelihood!r}"
        )
    if not _holds_data(fit):
        if log_likelihood is not False:
            warnings.warn(
                "the fit's data are spread over processes, so the "
                "log_likelihood and observed_data groups, which need every point on one "
                "host, are left out; fit.log_predictive_density(points) scores points "
                "held here",
                UserWarning,
                stacklevel=4,
            )
        return False
    if log_likelihood != "auto":
        return log_likelihood
    size = fit.num_chains * fit.num_draws * fit.data.shape[0]
    if size > MAX_LOG_LIKELIHOOD_VALUES:
        warnings.warn(
            f"the pointwise log-likelihood would hold {size:,} values "
            f"({fit.num_chains} chains x {fit.num_draws} draws x {fit.data.shape[0]:,} "
            "points); the log_likelihood group is left out. Pass log_likelihood=True "
            "to build it anyway, or thin the draws first.",
            UserWarning,
            stacklevel=4,
        )
        return False
    return True


def _holds_data(fit):
    """Whether this process holds every point of ``fit.data`` (not so when the
    data are a global array spread over processes)."""
    from dpgmm_ppl.sharding import holds_rows

    return holds_rows(fit.data)


def _check_posterior_predictive(fit, posterior_predictive):
    """The replicates given, checked; ``None`` for ``True`` (drawn once all else is
    checked) and ``False``."""
    if posterior_predictive is True or posterior_predictive is False:
        return None
    if not isinstance(posterior_predictive, dict) or set(posterior_predictive) != {OBSERVED_SITE}:
        raise TypeError(
            "posterior_predictive must be True, False or the dict of Fit.posterior_predictive() "
            f"(one key {OBSERVED_SITE!r}), got {_describe(posterior_predictive)}"
        )
    values = np.asarray(posterior_predictive[OBSERVED_SITE])
    if values.ndim != fit.data.ndim + 2 or values.shape[0] != fit.num_chains \
            or values.shape[2:] != fit.data.shape:
        expected = f"({fit.num_chains}, num_samples, {', '.join(map(str, fit.data.shape))})"
        raise ValueError(
            f"posterior_predictive[{OBSERVED_SITE!r}] must have shape {expected} "
            f"(chain, replicate, then the data's shape), got {values.shape}"
        )
    return values


def _describe(value):
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    return f"{value!r:.80} of type {type(value).__name__}"


def _posterior(fit, sample_dims, structure_dims):
    """The coords of the sample, component and data dims, and the posterior group."""
    coords = {
        "chain": np.arange(fit.num_chains),
        "draw": np.arange(fit.num_draws),
        "component": np.arange(fit.num_components),
    }
    if fit.dim is not None:
        coords["dim"] = np.arange(fit.dim)
        if any("dim_bis" in dims for dims in structure_dims.values()):
            coords["dim_bis"] = np.arange(fit.dim)
    posterior = _dataset(
        {
            name: (_site_dims(sample_dims, value, name, structure_dims), value)
            for name, value in fit.samples.items()
        },
        coords,
    )
    return coords, posterior


def fit_to_arviz(
    fit: Fit,
    *,
    log_likelihood: Literal["auto"] | bool = "auto",
    posterior_predictive: bool | dict[str, Any] = False,
) -> Any:
    """Build ``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data``
    and, for optimisers, ``optimization`` groups from a fit.

    A relabelled fit's ``permutations`` go into ``sample_stats`` as
    ``permutation`` with dims ``(chain, draw, component)``. ``log_likelihood``
    is ``True``, ``False`` or ``"auto"`` (included unless it would hold more
    than :data:`MAX_LOG_LIKELIHOOD_VALUES` values, as a minibatch fit of
    millions of points would). ``posterior_predictive`` is ``False``,
    ``True`` (one replicate per draw, ``fit.posterior_predictive()``) or the
    dict that :meth:`~dpgmm_ppl.Fit.posterior_predictive` returns; its
    ``obs`` goes into the ``posterior_predictive`` group with dims
    ``(chain, draw, obs_id[, dim])``, those of ``observed_data``'s ``obs``.
    Data spread over processes (a global array) give neither
    ``log_likelihood`` nor ``observed_data``, with a warning."""
    replicates = _check_posterior_predictive(fit, posterior_predictive)
    include_log_likelihood = _include_log_likelihood(fit, log_likelihood)
    if posterior_predictive is True:
        replicates = fit.posterior_predictive()[OBSERVED_SITE]
    sample_dims = ("chain", "draw")
    structure_dims = _structure_dims(fit)
    coords, posterior = _posterior(fit, sample_dims, structure_dims)
    stats_variables: dict[str, tuple[tuple[str, ...], Any]] = {
        name: (sample_dims, value) for name, value in fit.sample_stats.items()
    }
    stats_coords = {key: coords[key] for key in sample_dims}
    if fit.permutations is not None:
        stats_variables[PERMUTATION_STAT] = (sample_dims + ("component",), fit.permutations)
        stats_coords["component"] = coords["component"]
    stats = _dataset(stats_variables, stats_coords)
    obs_dims = ("obs_id",) + (("dim",) if fit.dim is not None else ())
    obs_coords = {"obs_id": np.arange(fit.data.shape[0])}
    if fit.dim is not None:
        obs_coords["dim"] = coords["dim"]
    observed = _dataset({OBSERVED_SITE: (obs_dims, fit.data)}, obs_coords) \
        if _holds_data(fit) else None
    groups = {"posterior": posterior, "sample_stats": stats}
    if include_log_likelihood:
        pointwise = mixture_log_density(fit.samples, fit.data)
        groups["log_likelihood"] = _dataset(
            {"obs": (sample_dims + ("obs_id",), pointwise)},
            {**{key: coords[key] for key in sample_dims}, "obs_id": obs_coords["obs_id"]},
        )
    if replicates is not None:
        groups["posterior_predictive"] = _dataset(
            {OBSERVED_SITE: (sample_dims + obs_dims, replicates)},
            {"chain": coords["chain"], "draw": np.arange(replicates.shape[1]), **obs_coords},
        )
    if _holds_data(fit):
        groups["observed_data"] = observed
    if fit.losses is not None:
        optimization = {"loss": (("chain", "step"), fit.losses)}
        for name, value in (fit.history or {}).items():
            dims = _site_dims(("chain", "frame"), value, name, structure_dims)
            optimization[f"{name}_history"] = (dims, value)
        opt_coords = {
            "chain": coords["chain"],
            "step": np.arange(1, fit.losses.shape[1] + 1),
            "component": coords["component"],
        }
        if fit.history_steps is not None:
            opt_coords["frame"] = np.asarray(fit.history_steps)
        if fit.dim is not None:
            opt_coords["dim"] = coords["dim"]
            if "dim_bis" in coords:
                opt_coords["dim_bis"] = coords["dim_bis"]
        groups["optimization"] = _dataset(optimization, opt_coords)
    return make_inference_data(groups, attrs=fit_metadata(fit))


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)) or hasattr(value, "__array__"):
        return np.asarray(value).tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    # Objects such as an optax optimiser have no faithful text form: keep a label.
    return {"unserialisable": repr(value)[:200]}


def fit_metadata(fit: Fit) -> dict[str, Any]:
    """Attributes that identify a fit: package version, backend, key, options, priors."""
    import dataclasses

    import dpgmm_ppl

    priors = {f.name: getattr(fit.priors, f.name) for f in dataclasses.fields(fit.priors)}
    # The backend's kind, so that a fit of a backend no longer registered
    # still knows what its chains are when loaded.
    kind = {} if fit.kind is None else {"backend_kind": fit.kind}
    spread = {} if _holds_data(fit) else {
        # No observed_data group: the data's shape and dtype, for Fit.data when loaded.
        "data_shape": json.dumps(list(fit.data.shape)),
        "data_dtype": str(fit.data.dtype),
    }
    return {
        **spread,
        **kind,
        "inference_library": "dpgmm_ppl",
        "inference_library_version": dpgmm_ppl.__version__,
        "dpgmm_ppl_format": FORMAT_VERSION,
        "backend": fit.backend,
        "num_components": int(fit.num_components),
        "covariance": fit.covariance,
        "rng_key": json.dumps(_jsonable(fit.rng_key)),
        "options": json.dumps(_jsonable(fit.options)),
        "priors": json.dumps(_jsonable(priors)),
        "timing": json.dumps(_jsonable(fit.timing)),
        # The data's column names ("null" for none), so a loaded fit labels its figures.
        "names": json.dumps(None if fit.names is None else list(fit.names)),
    }
