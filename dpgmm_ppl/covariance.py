"""Covariance structures of the components: one object per structure.

A :class:`CovarianceStructure` owns everything that differs between
``covariance="diag"``, ``"spherical"`` and ``"full"``: the NumPyro sites it
samples and their priors, how a diagonal start becomes its own, how its
sites map into and out of the standardised frame
(:mod:`dpgmm_ppl._frame`), the per-component spread and covariance matrices
read from posterior samples, and the ArviZ dims of its sites. The model,
the density, the frame, :class:`~dpgmm_ppl.Fit` and the ArviZ
conversion ask the object; none of them branches on the name.
:data:`COVARIANCE_STRUCTURES` maps each name to its object, and a new
structure is one more entry (``docs/covariance.md``, "Adding a structure").

The samples of every structure hold a per-component spread that the rest of
the package reads: ``scale`` with ``loc``'s shape or one per component, or
``scale_tril`` ``(..., K, D, D)``; a structure whose own sites are shaped
otherwise records those as deterministic sites as well.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Mapping

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

if TYPE_CHECKING:
    from dpgmm_ppl.priors import Priors

__all__ = [
    "COVARIANCE_STRUCTURES",
    "CovarianceStructure",
    "check_fixed_scale",
    "covariance_structure",
    "structure_for",
    "structure_of",
]


@dataclasses.dataclass(frozen=True)
class CovarianceStructure:
    """What one covariance structure contributes to the model and its results.

    Attributes
    ----------
    name : str
        The value of the ``covariance`` argument.
    sample : Callable
        ``sample(priors, event_shape, components) -> dict``: samples the
        structure's sites inside :func:`~dpgmm_ppl.dpgmm` (``components`` is
        the component plate, to enter for per-component sites) and returns
        the spread keyword of :class:`~dpgmm_ppl.GaussianMixture`,
        ``{"scale": ...}`` or ``{"scale_tril": ...}``.
    starting_values : Callable
        ``starting_values(values) -> dict``: a start with diagonal scales
        (``loc`` and ``scale`` of shape ``(K, D)``) given this structure's
        sites; values that already have them come back as they are.
    frame_spread : Callable
        ``frame_spread(spread) -> spread``: the per-dimension spread of the
        data that sets the frame's unit.
    map_scales : Callable
        ``map_scales(values, unit) -> dict``: the scale-like sites of
        ``values`` multiplied by the frame's ``unit`` (or its inverse).
    scales_log_unit : Callable
        ``scales_log_unit(unit, num_components) -> float``: the log-Jacobian
        of the sampled scales' map from the frame to data units.
    component_spread : Callable
        ``component_spread(samples) -> array``: each component's spread,
        ``scale`` broadcast to ``loc``'s shape or ``scale_tril``.
    matrices : Callable
        ``matrices(spread, dim) -> array``: the covariance matrices
        ``(..., K, D, D)`` of a ``component_spread``.
    marginal_scales : Callable
        ``marginal_scales(samples) -> array``: each component's standard
        deviation along each dimension, with ``loc``'s shape.
    own_scales : Callable
        ``own_scales(samples) -> array``: the standard deviations the
        structure holds per component, ``(..., K, D)`` or ``(..., K)`` (for
        ``"full"`` those given the dimensions before each).
    compact : Callable
        ``compact(matrices) -> array``: mean covariance matrices in the
        structure's own shape (scikit-learn's ``covariances_``).
    site_dims : Callable
        ``site_dims(event_dims) -> dict``: the ArviZ dims, after
        ``(chain, draw)``, of the structure's sites; ``event_dims`` is
        ``("dim",)`` for vector data and ``()`` for scalars. Sites whose dims
        start with ``"component"`` hold one value per component
        (:meth:`component_sites`); the others are shared by every component.
    spread_parameters : Callable
        ``spread_parameters(dim) -> int``: the free parameters of one
        component's spread (its scales and correlations) for data of ``dim``
        columns; MAP's ``objective="occam"`` counts them.
    accepts_fixed_scale : bool
        Whether ``Priors.fixed_scale`` may replace the sampled scales.
    on_scalar_data : str
        The structure fitted to scalar data, where one scale per component
        leaves nothing to choose.
    """

    name: str
    sample: Callable
    starting_values: Callable
    frame_spread: Callable
    map_scales: Callable
    scales_log_unit: Callable
    component_spread: Callable
    matrices: Callable
    marginal_scales: Callable
    own_scales: Callable
    compact: Callable
    site_dims: Callable
    spread_parameters: Callable
    accepts_fixed_scale: bool = False
    on_scalar_data: str = "diag"

    def __repr__(self) -> str:
        return f"CovarianceStructure({self.name!r})"

    def component_sites(self, event_dims: tuple[str, ...]) -> tuple[str, ...]:
        """The structure's sites with one value per component, first axis ``component``.

        Read from :attr:`site_dims`: the sites to permute when the components
        are reordered; a shared site (one covariance for every component) is
        left as it is.

        Examples
        --------
        >>> COVARIANCE_STRUCTURES["full"].component_sites(("dim",))
        ('scale', 'corr_cholesky', 'scale_tril')
        """
        return tuple(
            name for name, dims in self.site_dims(event_dims).items()
            if tuple(dims[:1]) == ("component",)
        )


def _scale_prior(priors, scale_rate, scale_shape):
    prior = dist.InverseGamma(priors.scale_shape, scale_rate)
    return prior.expand(scale_shape).to_event(len(scale_shape))


def _array_module(value):
    return np if isinstance(value, np.ndarray) else jnp


# -- "diag": one scale per component and dimension -------------------------------------


def _diag_sample(priors, event_shape, components):
    with components:
        if priors.fixed_scale is None:
            scale = numpyro.sample("scale", _scale_prior(priors, priors.scale_rate, event_shape))
    if priors.fixed_scale is not None:
        fixed = jnp.asarray(priors.fixed_scale, dtype=jnp.result_type(float))
        scale = numpyro.deterministic(
            "scale", jnp.broadcast_to(fixed, (components.size,) + tuple(event_shape))
        )
    return {"scale": scale}


def _map_scale(values, unit):
    if "scale" not in values:
        return {}
    scale = values["scale"]
    # A spherical scale (K,) of vector data has one unit for all dimensions.
    same_rank = np.ndim(scale) >= np.ndim(values["loc"])
    return {"scale": scale * (unit if same_rank else unit[..., 0])}


def _per_dimension_log_unit(unit, num_components):
    return num_components * float(np.sum(np.log(unit)))


def _scale_spread(samples):
    scale, loc = np.asarray(samples["scale"]), np.asarray(samples["loc"])
    if scale.ndim < loc.ndim:  # one scale per component
        scale = np.broadcast_to(scale[..., None], loc.shape)
    return scale


def _diagonal_matrices(spread, dim):
    return spread[..., :, None] ** 2 * np.eye(dim)


def _diag_dims(event_dims):
    return {"scale": ("component",) + tuple(event_dims)}


DIAG = CovarianceStructure(
    name="diag",
    sample=_diag_sample,
    starting_values=lambda values: values,
    frame_spread=lambda spread: spread,
    map_scales=_map_scale,
    scales_log_unit=_per_dimension_log_unit,
    component_spread=_scale_spread,
    matrices=_diagonal_matrices,
    marginal_scales=_scale_spread,
    own_scales=lambda samples: np.asarray(samples["scale"]),
    compact=lambda matrices: np.diagonal(matrices, axis1=-2, axis2=-1).copy(),
    site_dims=_diag_dims,
    spread_parameters=lambda dim: dim,
    accepts_fixed_scale=True,
)


# -- "spherical": one scale per component ---------------------------------------------


def _spherical_sample(priors, event_shape, components):
    with components:
        scale = numpyro.sample("scale", _scale_prior(priors, jnp.mean(priors.scale_rate), ()))
    return {"scale": scale[..., None]}


def _spherical_start(values):
    loc = values["loc"]
    if np.ndim(loc) < 2 or np.ndim(values["scale"]) != np.ndim(loc):
        return values
    xp = _array_module(loc)
    values = dict(values)
    values["scale"] = xp.exp(xp.mean(xp.log(values["scale"]), axis=-1))
    return values


def _geometric_mean_spread(spread):
    # One unit for every dimension, so that a spherical covariance stays spherical.
    if np.ndim(spread) == 1:
        spread = np.full_like(spread, np.exp(np.mean(np.log(spread))))
    return spread


def _spherical_log_unit(unit, num_components):
    if np.ndim(unit) == 1:
        return num_components * float(np.log(unit[0]))
    return _per_dimension_log_unit(unit, num_components)


SPHERICAL = CovarianceStructure(
    name="spherical",
    sample=_spherical_sample,
    starting_values=_spherical_start,
    frame_spread=_geometric_mean_spread,
    map_scales=_map_scale,
    scales_log_unit=_spherical_log_unit,
    component_spread=_scale_spread,
    matrices=_diagonal_matrices,
    marginal_scales=_scale_spread,
    own_scales=lambda samples: np.asarray(samples["scale"]),
    compact=lambda matrices: np.mean(np.diagonal(matrices, axis1=-2, axis2=-1), axis=-1),
    site_dims=lambda event_dims: {"scale": ("component",)},
    spread_parameters=lambda dim: 1,
)


# -- "full": scales times an LKJ correlation ------------------------------------------


def _full_sample(priors, event_shape, components):
    dim = event_shape[0]
    with components:
        scale = numpyro.sample("scale", _scale_prior(priors, priors.scale_rate, event_shape))
        if dim > 1:
            corr_cholesky = numpyro.sample(
                "corr_cholesky", dist.LKJCholesky(dim, priors.lkj_concentration(dim))
            )
    scale_tril = scale[..., None] * corr_cholesky if dim > 1 else scale[..., None]
    return {"scale_tril": numpyro.deterministic("scale_tril", scale_tril)}


def _full_start(values):
    loc = values["loc"]
    if np.ndim(loc) < 2 or loc.shape[-1] < 2 or "corr_cholesky" in values:
        return values
    xp = _array_module(loc)
    values = dict(values)
    eye = xp.eye(loc.shape[-1], dtype=loc.dtype)
    values["corr_cholesky"] = xp.broadcast_to(eye, loc.shape + loc.shape[-1:])
    return values


def _map_rows(values, unit, name="scale_tril"):
    # L -> diag(unit) L: scale the rows.
    return {name: values[name] * unit[..., :, None]} if name in values else {}


def _tril_spread(samples):
    return np.asarray(samples["scale_tril"])


def _tril_matrices(spread, dim):
    return spread @ np.swapaxes(spread, -1, -2)


def _full_dims(event_dims):
    matrix = ("component", "dim", "dim_bis")
    return {"scale": ("component", "dim"), "corr_cholesky": matrix, "scale_tril": matrix}


FULL = CovarianceStructure(
    name="full",
    sample=_full_sample,
    starting_values=_full_start,
    frame_spread=lambda spread: spread,
    map_scales=lambda values, unit: {**_map_scale(values, unit), **_map_rows(values, unit)},
    scales_log_unit=_per_dimension_log_unit,
    component_spread=_tril_spread,
    matrices=_tril_matrices,
    marginal_scales=_scale_spread,
    own_scales=lambda samples: np.diagonal(
        np.asarray(samples["scale_tril"]), axis1=-2, axis2=-1
    ),
    compact=lambda matrices: matrices,
    site_dims=_full_dims,
    # Per-dimension scales and the correlations below the diagonal.
    spread_parameters=lambda dim: dim + dim * (dim - 1) // 2,
)


#: The covariance structures by name, in the order the documentation lists them.
COVARIANCE_STRUCTURES = {structure.name: structure for structure in (DIAG, SPHERICAL, FULL)}


def _describe(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def covariance_structure(
    name: str | CovarianceStructure, argument: str = "covariance"
) -> CovarianceStructure:
    """The registered :class:`CovarianceStructure` called ``name``.

    Parameters
    ----------
    name : str or CovarianceStructure
        A key of :data:`COVARIANCE_STRUCTURES`; a structure is returned as it is.
    argument : str
        The argument named in the error.

    Returns
    -------
    CovarianceStructure

    Raises
    ------
    ValueError
        When ``name`` is not a registered structure.

    Examples
    --------
    >>> covariance_structure("full").name
    'full'
    >>> covariance_structure("tied")
    Traceback (most recent call last):
    ...
    ValueError: covariance must be one of ('diag', 'spherical', 'full'), got 'tied'
    """
    if isinstance(name, CovarianceStructure):
        return name
    if not isinstance(name, str) or name not in COVARIANCE_STRUCTURES:
        raise ValueError(
            f"{argument} must be one of {tuple(COVARIANCE_STRUCTURES)}, got {_describe(name)}"
        )
    return COVARIANCE_STRUCTURES[name]


def structure_for(name: str | CovarianceStructure, num_dims: int) -> CovarianceStructure:
    """The structure fitted when ``covariance=name`` meets data with ``num_dims`` event dims.

    Scalar data (``num_dims == 0``) have one scale per component, so each
    structure names the one that fits them (:attr:`CovarianceStructure.on_scalar_data`).

    Examples
    --------
    >>> structure_for("full", 0).name, structure_for("full", 1).name
    ('diag', 'full')
    """
    structure = covariance_structure(name)
    if num_dims == 0:
        return covariance_structure(structure.on_scalar_data)
    return structure


def check_fixed_scale(structure: CovarianceStructure, priors: Priors) -> None:
    """Refuse ``Priors.fixed_scale`` with a structure whose scales it cannot fix.

    Examples
    --------
    >>> from dpgmm_ppl.priors import Priors
    >>> check_fixed_scale(covariance_structure("full"), Priors(fixed_scale=1.0))
    Traceback (most recent call last):
    ...
    ValueError: priors.fixed_scale fixes diagonal scales: it needs covariance='diag', got covariance='full'
    """
    if priors is None or priors.fixed_scale is None or structure.accepts_fixed_scale:
        return
    accepting = " or ".join(
        f"covariance={name!r}"
        for name, other in COVARIANCE_STRUCTURES.items()
        if other.accepts_fixed_scale
    )
    raise ValueError(
        f"priors.fixed_scale fixes diagonal scales: it needs {accepting}, "
        f"got covariance={structure.name!r}"
    )


def structure_of(samples: Mapping[str, Any]) -> CovarianceStructure:
    """The built-in structure that reads the per-component spread of ``samples``.

    For functions given samples only: ``scale_tril`` means a matrix per
    component, a ``scale`` with fewer axes than ``loc`` one scale per
    component. Every structure records one of these spreads, so the answer
    reads any structure's samples correctly.

    Examples
    --------
    >>> import numpy as np
    >>> structure_of({"loc": np.zeros((3, 2)), "scale": np.ones(3)}).name
    'spherical'
    """
    if "scale_tril" in samples:
        return FULL
    if np.ndim(samples["scale"]) < np.ndim(samples["loc"]):
        return SPHERICAL
    return DIAG
