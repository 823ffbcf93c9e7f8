"""Hyperparameters of the DP-GMM priors, in one small immutable object.

The defaults are scaled from the data, in the spirit of scikit-learn's
``BayesianGaussianMixture`` (which centres ``mean_prior`` on the data mean and
sets ``covariance_prior`` from the data covariance), so that the model gives the
same clusters, in data units, whatever the units of the data.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from dpgmm_ppl.sharding import ProcessRows

__all__ = ["Priors"]

_SCALAR_FIELDS = ("alpha_shape", "alpha_rate", "scale_shape")
_DATA_FIELDS = ("loc_mean", "loc_scale", "scale_rate")
_OPTIONAL_FIELDS = ("fixed_scale",)
_OPTIONAL_SCALAR_FIELDS = ("corr_concentration",)


#: The default ``scale_rate`` over the data's standard deviation, which puts
#: the prior mode of a scale at a third of it. Chosen by measurement
#: (docs/mle-collapse.md): at half the spread MAP's point estimate on iris
#: (150 x 4, full covariances) kept 7 or 8 components and lost to
#: scikit-learn's ``BayesianGaussianMixture`` by 0.5 nats per held-out point;
#: at the spread it keeps 2 to 5 and wins by 0.46. NUTS on the seed data at
#: K = 25 mixed better too (``alpha`` ESS 334-443 against 50-208 per 500
#: draws). Twice the spread also fixed iris, but it widened the spare
#: components so far that NUTS at K = 10 slowed to 500 steps a draw.
SCALE_RATE_PER_SPREAD = 1.0

#: Rows per block when the data's moments are accumulated in float64.
_MOMENT_BLOCK = 1 << 20


def _mean_and_std(data):
    """Mean and standard deviation along axis 0, in float64, one block of rows at a time.

    Never holds a float64 copy of the whole array (80 MB for ten million
    float32 points), only of one block.
    """
    mean = data.mean(axis=0, dtype=np.float64)
    sum_of_squares = 0.0
    for start in range(0, data.shape[0], _MOMENT_BLOCK):
        block = data[start : start + _MOMENT_BLOCK].astype(np.float64) - mean
        sum_of_squares = sum_of_squares + np.sum(block * block, axis=0)
    return mean, np.sqrt(sum_of_squares / data.shape[0])


def _spread_or_fallback(mean, std, xp=np):
    """``std``, with a constant column's spread taken from its magnitude, then 1."""
    return xp.where(std > 0, std, xp.where(xp.abs(mean) > 0, xp.abs(mean), 1.0))


def data_center_and_spread(data: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The mean and standard deviation of the data's columns, in float64.

    A constant column has no spread: its magnitude stands in, then 1. The
    default priors and the density's standardised frame are both set from these.
    """
    mean, std = _mean_and_std(np.asarray(data))
    return mean, _spread_or_fallback(mean, std)


@dataclasses.dataclass(frozen=True, eq=False)
class Priors:
    r"""Hyperparameters of the DP-GMM.

    .. math::

        \alpha &\sim \mathrm{Gamma}(\text{alpha\_shape}, \text{alpha\_rate}) \\
        \mu_{kd} &\sim \mathcal{N}(\text{loc\_mean}_d, \text{loc\_scale}_d) \\
        \sigma_{kd} &\sim \mathrm{InverseGamma}(\text{scale\_shape}, \text{scale\_rate}_d)

    The inverse-gamma density of a scale vanishes like
    :math:`\exp(-\text{scale\_rate}/\sigma)` as :math:`\sigma \to 0`, faster
    than a component collapsed onto one point can raise the likelihood
    (:math:`\propto 1/\sigma`). That removes the singularity that makes a
    maximum-likelihood fit run to NaN. A half-normal prior, whose density is
    finite at zero, does not.

    Parameters
    ----------
    alpha_shape, alpha_rate : float
        Gamma prior on the concentration. Default 1 and 1.
    loc_mean : float, array of shape (D,), or None
        Prior mean of the component locations. ``None``: the data mean.
    loc_scale : float, array of shape (D,), or None
        Prior standard deviation of the locations. ``None``: twice the data
        standard deviation, so that clusters in the tails are not shrunk.
    scale_shape : float
        Shape of the inverse-gamma prior on each scale. Default 2.
    scale_rate : float, array of shape (D,), or None
        Rate of the inverse-gamma prior. ``None``: the data standard
        deviation (:data:`SCALE_RATE_PER_SPREAD`), which puts the prior mode
        of a scale at a third of it. A component holding ``n`` nearly
        coincident points keeps a scale of about
        ``scale_rate / (n + scale_shape + 1)`` at a mode; for data with ties
        or rounded values a larger rate keeps a point estimate from fitting
        components to a handful of points (see :mod:`dpgmm_ppl.infer.map`).
    fixed_scale : float, array of shape (D,), or None
        If given, every component's scale is this known value (a
        ``numpyro.deterministic`` site instead of a sampled one), which gives
        models with exact posteriors, for checks.
    corr_concentration : float or None
        With ``covariance="full"``: the concentration :math:`\eta` of the
        LKJ prior on each component's correlation matrix :math:`R`, whose
        density is proportional to :math:`\det(R)^{\eta - 1}`. ``None``:
        :math:`(D + 3) / 2`. Any :math:`D` points lie on a hyperplane, so a
        component can flatten onto them, one eigenvalue :math:`\lambda` of
        :math:`R` going to zero, which raises their likelihood like
        :math:`\lambda^{-D/2}`; the prior, in the coordinates of the Cholesky
        factor, falls like :math:`\lambda^{\eta - 1}`. With
        :math:`\eta > 1 + D/2` the log joint stays bounded, as the
        inverse-gamma prior bounds it for the scales.

    Examples
    --------
    >>> import numpy as np
    >>> priors = Priors().resolve(np.array([0.0, 2.0, 4.0, 6.0]))
    >>> float(priors.loc_mean), round(float(priors.loc_scale), 3)
    (3.0, 4.472)
    """

    alpha_shape: float = 1.0
    alpha_rate: float = 1.0
    loc_mean: Any = None
    loc_scale: Any = None
    scale_shape: float = 2.0
    scale_rate: Any = None
    fixed_scale: Any = None
    corr_concentration: Any = None

    def __post_init__(self) -> None:
        for name in _SCALAR_FIELDS + _OPTIONAL_SCALAR_FIELDS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_SCALAR_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"Priors.{name} must be a positive float, got {value!r}"
                )
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Priors.{name} must be positive and finite, got {value}")
        for name in _DATA_FIELDS + _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is None or isinstance(value, jax.core.Tracer):
                continue
            array = np.asarray(value)
            if array.dtype.kind not in "iuf" or array.ndim > 1:
                raise TypeError(
                    f"Priors.{name} must be None, a float or a 1-d float array, got {value!r}"
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"Priors.{name} must be finite, got {value!r}")
            if name != "loc_mean" and not np.all(array > 0):
                raise ValueError(f"Priors.{name} must be positive, got {value!r}")

    def lkj_concentration(self, dim: int) -> float:
        """The LKJ concentration for ``dim``-dimensional data: the field, or ``(dim + 3) / 2``."""
        if self.corr_concentration is not None:
            return float(self.corr_concentration)
        return (dim + 3.0) / 2.0

    @property
    def is_resolved(self) -> bool:
        """Whether every data-dependent field has a value."""
        return all(getattr(self, name) is not None for name in _DATA_FIELDS)

    def resolve(self, data: npt.ArrayLike | ProcessRows) -> Priors:
        """Fill the fields left as ``None`` from the data.

        Parameters
        ----------
        data : array of shape (N,) or (N, D), or ProcessRows
            Observations; only their mean and standard deviation are used.
            A :class:`~dpgmm_ppl.sharding.ProcessRows` (rows spread over
            processes) gives those of the rows of every process.

        Returns
        -------
        Priors
            A copy whose data-dependent fields are float32 arrays of shape
            ``()`` for 1-d data or ``(D,)``.
        """
        # Inside a user's jitted code the data can be a tracer: use jax.numpy then.
        xp = jnp if isinstance(data, jax.core.Tracer) else np
        if hasattr(data, "mean_and_std"):
            # Rows spread over processes (dpgmm_ppl.sharding.ProcessRows): global sums.
            mean, std = data.mean_and_std()
        elif xp is jnp:
            data = jnp.asarray(data, dtype=jnp.float32)
            mean, std = data.mean(axis=0), data.std(axis=0)
        else:
            mean, std = _mean_and_std(np.asarray(data))
        std = _spread_or_fallback(mean, std, xp)
        defaults = {
            "loc_mean": mean, "loc_scale": 2.0 * std, "scale_rate": SCALE_RATE_PER_SPREAD * std
        }
        filled = {}
        for name in _DATA_FIELDS:
            value = getattr(self, name)
            value = defaults[name] if value is None else value
            filled[name] = xp.broadcast_to(
                xp.asarray(value, dtype=xp.float32), mean.shape
            ).copy()
        return dataclasses.replace(self, **filled)


#: The fields that a compiled program takes as arguments; ``corr_concentration``
#: sets the LKJ prior's normaliser on the host and stays part of its structure.
_TRACED_FIELDS = _SCALAR_FIELDS + _DATA_FIELDS + _OPTIONAL_FIELDS


def _flatten_priors(priors):
    return tuple(getattr(priors, name) for name in _TRACED_FIELDS), priors.corr_concentration


def _unflatten_priors(corr_concentration, children):
    # No validation: the children are tracers, or placeholders that JAX
    # passes while it transforms a tree.
    priors = object.__new__(Priors)
    for name, value in zip(_TRACED_FIELDS, children):
        object.__setattr__(priors, name, value)
    object.__setattr__(priors, "corr_concentration", corr_concentration)
    return priors


# Priors is a pytree, so that compiled programs take them as an argument and
# one program serves fits with other priors (``None`` fields are empty subtrees).
jax.tree_util.register_pytree_node(Priors, _flatten_priors, _unflatten_priors)
