"""The Gaussian mixture of every draw of a fit, and what is computed from it.

A draw of a fit's ``samples`` (``weights``, ``loc``, ``scale`` and, for full
covariances, ``scale_tril``) is one Gaussian mixture. The functions here read
those sites whatever the covariance structure, and evaluate the mixtures of
many draws at once: log densities, responsibilities and density bands.
:class:`~dpgmm_ppl.Fit` builds its predictive methods on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dpgmm_ppl.covariance import covariance_structure, structure_of
from dpgmm_ppl.density import bucket_size
from dpgmm_ppl.distributions import GaussianMixture

if TYPE_CHECKING:
    from jax.typing import ArrayLike

    from dpgmm_ppl.covariance import CovarianceStructure

__all__ = [
    "DensityBand",
    "component_parameters",
    "covariance_matrices",
    "mixture_from_parameters",
    "mixture_log_density",
]

#: Draws evaluated at once when a density is computed over many draws.
_DRAW_BATCH = 64


def component_parameters(
    samples: Mapping[str, ArrayLike], covariance: str | CovarianceStructure | None = None
) -> tuple[np.ndarray, np.ndarray, Any]:
    """``(weights, loc, spread)`` of the components, whatever the covariance structure.

    The structure gives the spread
    (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.component_spread`):
    ``scale_tril`` (``(..., K, D, D)``) for full covariances and ``scale``
    otherwise, a spherical scale ``(..., K)`` broadcast to ``(..., K, D)``
    against ``loc``. :func:`mixture_from_parameters` turns one draw of them
    into a :class:`~dpgmm_ppl.GaussianMixture`.

    Parameters
    ----------
    samples : dict
        ``weights``, ``loc``, ``scale`` and, for full covariances,
        ``scale_tril``, with any common leading dims.
    covariance : str or CovarianceStructure, optional
        The structure of the samples (``Fit.covariance``); by default the
        one their sites show (:func:`~dpgmm_ppl.covariance.structure_of`).

    Returns
    -------
    tuple of np.ndarray
    """
    weights, loc = np.asarray(samples["weights"]), np.asarray(samples["loc"])
    return weights, loc, _structure(samples, covariance).component_spread(samples)


def _structure(samples, covariance):
    if covariance is None:
        return structure_of(samples)
    return covariance_structure(covariance)


def covariance_matrices(
    samples: Mapping[str, ArrayLike], covariance: str | CovarianceStructure | None = None
) -> np.ndarray:
    r"""The covariance matrix of every component, ``(..., K, D, D)``, for vector data.

    :math:`L L^\top` for full covariances, :math:`\operatorname{diag}\sigma^2`
    for diagonal and :math:`\sigma^2 I` for spherical ones
    (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.matrices`).

    Parameters
    ----------
    samples : dict
        ``loc``, ``scale`` and, for full covariances, ``scale_tril``, with any
        common leading dims.
    covariance : str or CovarianceStructure, optional
        The structure of the samples; by default the one their sites show.

    Returns
    -------
    np.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> covariance_matrices({"loc": np.zeros((1, 2)), "scale": np.array([2.0])}).tolist()
    [[[4.0, 0.0], [0.0, 4.0]]]
    """
    structure = _structure(samples, covariance)
    _, loc, spread = component_parameters({"weights": np.zeros(0), **samples}, structure)
    if loc.ndim < 2:
        raise ValueError(f"covariance matrices need vector data; loc has shape {loc.shape}")
    return structure.matrices(np.asarray(spread, np.float64), loc.shape[-1])


def mixture_from_parameters(
    weights: ArrayLike, loc: ArrayLike, spread: ArrayLike
) -> GaussianMixture:
    """The :class:`~dpgmm_ppl.GaussianMixture` of one draw of :func:`component_parameters`."""
    if jnp.ndim(spread) == jnp.ndim(loc) + 1:
        return GaussianMixture(weights, loc, scale_tril=spread)
    return GaussianMixture(weights, loc, spread)


@jax.jit
def _pointwise(weights, loc, spread, x):
    """``log p(x_n | draw s)`` for stacked draws: shape (S, n)."""

    def one(params):
        return mixture_from_parameters(*params).log_prob(x)

    return jax.lax.map(one, (weights, loc, spread), batch_size=_DRAW_BATCH)


def mixture_log_density(samples: Mapping[str, ArrayLike], x: ArrayLike) -> np.ndarray:
    """Log density of ``x`` under every draw in ``samples``.

    Parameters
    ----------
    samples : dict
        ``weights``, ``loc`` and ``scale`` (and ``scale_tril`` for full
        covariances) with leading dims ``(chain, draw)``.
    x : Float[Array, "n"] or Float[Array, "n D"]
        Points.

    Returns
    -------
    np.ndarray
        Shape ``(chain, draw, n)``.
    """
    lead = np.shape(samples["weights"])[:2]
    flat = _flat_parameters(samples)
    values = _pointwise(*flat, _padded_points(x, flat[1].dtype))[:, : np.shape(x)[0]]
    return np.asarray(values).reshape(lead + (np.shape(x)[0],))


def _padded_points(x, dtype):
    """``x`` padded with copies of its last row to a bucket of rows
    (:func:`~dpgmm_ppl.density.bucket_size`), so that point sets of nearby
    sizes (cross-validation folds) share one compiled evaluation."""
    x = np.asarray(x, dtype)
    padding = bucket_size(x.shape[0]) - x.shape[0]
    if padding and x.shape[0]:
        x = np.concatenate([x, np.repeat(x[-1:], padding, axis=0)])
    return jnp.asarray(x)


def _flat_parameters(samples):
    """:func:`component_parameters` with ``(chain, draw)`` flattened into one axis."""
    return [
        jnp.reshape(jnp.asarray(value), (-1,) + np.shape(value)[2:])
        for value in component_parameters(samples)
    ]


@jax.jit
def _mean_responsibilities(weights, loc, spread, x):
    """Responsibilities ``p(z_n = k | x_n, draw)`` averaged over stacked draws: (n, K)."""

    def add(total, params):
        log_joint = mixture_from_parameters(*params).component_log_prob(x)
        return total + jax.nn.softmax(log_joint, axis=-1), None

    zeros = jnp.zeros((x.shape[0], weights.shape[-1]), loc.dtype)
    total, _ = jax.lax.scan(add, zeros, (weights, loc, spread))
    return total / weights.shape[0]


def _hdi_bounds(values, prob):
    """Shortest interval holding ``prob`` of the values along axis 0, per column."""
    ordered = np.sort(values, axis=0)
    count = ordered.shape[0]
    width = min(count - 1, max(0, int(np.ceil(prob * count)) - 1))
    spans = ordered[width:] - ordered[: count - width]
    start = np.argmin(spans, axis=0)
    columns = np.arange(ordered.shape[1])
    return ordered[start, columns], ordered[start + width, columns]


class DensityBand(NamedTuple):
    """A predictive density on a grid: the mean over draws and a credible band.

    For MAP (one draw per chain) ``lower`` and ``upper`` equal ``mean``.
    """

    grid: np.ndarray
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
