"""The Gaussian mixture likelihood with the component labels summed out."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes

from dpgmm_ppl.distributions._log_space import _logsumexp_matmul, _safe_log

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _event_array(name, value, event_shape):
    """``value`` as an array broadcastable to ``event_shape``, or a ValueError naming it."""
    value = jnp.asarray(value)
    try:
        shape = jnp.broadcast_shapes(jnp.shape(value), event_shape)
    except ValueError:
        shape = None
    if shape != event_shape:
        raise ValueError(
            f"{name} must broadcast to the event shape {event_shape}, "
            f"got shape {jnp.shape(value)}"
        )
    return value


class GaussianMixture(Distribution):
    r"""Gaussian mixture with the component labels marginalised.

    .. math::

        \log p(x) = \operatorname{logsumexp}_k \Big[\log w_k
            + \sum_d \log \mathcal{N}(x_d \mid \mu_{kd}, \sigma_{kd})\Big]

    Data are scalars (``loc`` of shape ``(K,)``), vectors with a diagonal
    covariance (``loc`` and ``scale`` of shape ``(K, D)``), or vectors with a
    full covariance given by its Cholesky factor (``scale_tril`` of shape
    ``(K, D, D)``, :math:`\Sigma_k = L_k L_k^\top`, instead of ``scale``).

    Each component's log joint is a quadratic in the data, so all of them are
    one matrix product of features :math:`[x_d^2, x_d, 1]` (with a full
    covariance, :math:`[x_i x_j]_{i \le j}, x_d, 1`, whose coefficients are
    the entries of the precision matrix :math:`L_k^{-\top} L_k^{-1}`) against
    per-component coefficients; only the ``logsumexp`` touches each
    (point, component) pair again. The features are taken of
    :math:`x' = (x - c) / u` for a centre :math:`c` and a unit :math:`u`:

    .. math::

        \log w_k + \log \mathcal{N}(x \mid \mu_k, \sigma_k)
            = \sum_d \Big[-\frac{x_d'^2}{2\sigma_{kd}'^2}
                + \frac{\mu_{kd}' x_d'}{\sigma_{kd}'^2}
                - \frac{\mu_{kd}'^2}{2\sigma_{kd}'^2} - \log \sigma_{kd}
                - \tfrac12 \log 2\pi\Big] + \log w_k,

    with :math:`\mu' = (\mu - c) / u` and :math:`\sigma' = \sigma / u`. The
    value does not depend on :math:`c` and :math:`u`, and neither does its
    gradient (they are held constant under autodiff); they keep the
    expanded square from cancelling away float32 digits when the data sit
    far from zero, and its terms inside the float32 range whatever the data's
    units. Results are in data units.

    What the expanded square still costs in float32 is a rounding error of
    about :math:`\epsilon\,(|x'| + |\mu_k'|)^2 / (2\sigma_k'^2)` in
    component k's term, which the direct form does not have: about 2e-3 nats
    at points of a component a hundred of its own widths from the centre,
    0.2 nats at a thousand widths. float64 has room for that.

    Parameters
    ----------
    weights : Float[Array, "K"]
        Mixture weights on the simplex (zeros allowed).
    loc : Float[Array, "K"] or Float[Array, "K D"]
        Component means.
    scale : Float[Array, "K"] or Float[Array, "K D"], optional
        Component standard deviations, positive. Give either ``scale`` or
        ``scale_tril``.
    scale_tril : Float[Array, "K D D"], optional
        Lower-triangular Cholesky factors of the component covariances, with
        a positive diagonal.
    center : float or Float[Array, "D"], optional
        Where the data are centred before the quadratic forms: any value near
        the data works. Default: the mean of ``loc`` over the components.
    unit : float or Float[Array, "D"], optional
        Positive; what the centred data are divided by. Default: the geometric
        mean of ``scale`` (of the diagonal of ``scale_tril``) over the components.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> mixture = GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros(2), jnp.ones(2))
    >>> round(float(mixture.log_prob(0.0)), 4)
    -0.9189
    >>> shifted = GaussianMixture(
    ...     jnp.array([0.5, 0.5]), 1e6 + jnp.zeros(2), jnp.ones(2), center=1e6, unit=2.0
    ... )
    >>> round(float(shifted.log_prob(1e6)), 4)
    -0.9189
    >>> correlated = GaussianMixture(
    ...     jnp.ones(1), jnp.zeros((1, 2)), scale_tril=jnp.array([[[1.0, 0.0], [0.6, 0.8]]])
    ... )
    >>> round(float(correlated.log_prob(jnp.array([1.0, 1.0]))), 4)
    -2.2397
    """

    arg_constraints = {
        "weights": constraints.simplex,
        "loc": constraints.real,
        "scale": constraints.positive,
        "scale_tril": constraints.lower_cholesky,
        "center": constraints.real,
        "unit": constraints.positive,
    }
    support = constraints.real
    pytree_data_fields = ("weights", "loc", "scale", "scale_tril", "center", "unit")
    pytree_aux_fields = ("is_vector", "is_full")

    weights: jax.Array
    loc: jax.Array
    scale: jax.Array | None  # None when scale_tril is given
    scale_tril: jax.Array | None  # None when scale is given
    center: jax.Array
    unit: jax.Array
    is_vector: bool
    is_full: bool

    def __init__(
        self,
        weights: ArrayLike,
        loc: ArrayLike,
        scale: ArrayLike | None = None,
        *,
        scale_tril: ArrayLike | None = None,
        center: ArrayLike | None = None,
        unit: ArrayLike | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (scale is None) == (scale_tril is None):
            raise ValueError("GaussianMixture takes exactly one of scale and scale_tril")
        weights, loc = jnp.asarray(weights), jnp.asarray(loc)
        if scale_tril is not None:
            scale_tril = jnp.asarray(scale_tril)
            if loc.ndim != 2 or scale_tril.shape != loc.shape + loc.shape[-1:]:
                raise ValueError(
                    "scale_tril must have shape (K, D, D) for loc of shape (K, D), "
                    f"got scale_tril {scale_tril.shape} and loc {loc.shape}"
                )
            self.is_vector = True
            scale = None  # as it was given: exactly one of the two is
            spread = jnp.diagonal(scale_tril, axis1=-2, axis2=-1)
        else:
            scale = jnp.asarray(scale)
            self.is_vector = loc.ndim >= 2
            loc, scale = promote_shapes(loc, scale)
            loc, scale = jnp.broadcast_arrays(loc, scale)
            spread = scale
        self.weights, self.loc, self.scale, self.scale_tril = weights, loc, scale, scale_tril
        self.is_full = scale_tril is not None
        event_shape = loc.shape[-1:] if self.is_vector else ()
        if center is None:
            center = jnp.mean(loc, axis=0)
        if unit is None:
            unit = jnp.exp(jnp.mean(jnp.log(spread), axis=0))
        self.center = _event_array("center", center, event_shape)
        self.unit = _event_array("unit", unit, event_shape)
        if self.is_vector:
            self.support = constraints.real_vector
        # Only the spread that was given is checked.
        unused = "scale" if self.is_full else "scale_tril"
        self.arg_constraints = {
            name: constraint
            for name, constraint in type(self).arg_constraints.items()
            if name != unused
        }
        super().__init__(
            batch_shape=(), event_shape=event_shape, validate_args=validate_args
        )

    def _coefficients(self, center, unit):
        """Coefficients of the features, one column per component: (F, K).

        Rows: the quadratic terms (``-1/(2 s'^2)`` per dimension, or the
        precision entries of each pair ``i <= j``), the linear terms ``P' m'``
        (one per dimension), and ``const + log w``.
        """
        if self.is_full:
            quadratic, linear, constant = self._full_terms(center, unit)
        else:
            loc = (self.loc - center) / unit
            precision = (unit / self.scale) ** 2
            linear = loc * precision
            constant = -0.5 * loc * linear - jnp.log(self.scale) - _HALF_LOG_2PI
            if self.is_vector:
                constant = jnp.sum(constant, axis=-1)
                quadratic, linear = -0.5 * precision.T, linear.T
            else:
                quadratic, linear = (-0.5 * precision)[None], linear[None]
        return jnp.concatenate(
            [quadratic, linear, (constant + _safe_log(self.weights))[None]], axis=0
        )

    def _full_terms(self, center, unit):
        """Quadratic (D(D+1)/2, K), linear (D, K) and constant (K,) terms of full covariances."""
        dim = self.loc.shape[-1]
        unit = jnp.broadcast_to(unit, (dim,))
        loc = (self.loc - center) / unit
        # The Cholesky factor in the unit frame, and its inverse A: P' = A^T A.
        tril = self.scale_tril / unit[:, None]
        eye = jnp.broadcast_to(jnp.eye(dim, dtype=tril.dtype), tril.shape)
        inverse = jax.scipy.linalg.solve_triangular(tril, eye, lower=True)
        precision = jnp.einsum("kji,kjl->kil", inverse, inverse, precision=jax.lax.Precision.HIGHEST)
        rows, cols = np.triu_indices(dim)
        pair_weight = np.where(rows == cols, -0.5, -1.0)
        quadratic = (precision[:, rows, cols] * pair_weight).T
        linear = jnp.einsum("kij,kj->ik", precision, loc, precision=jax.lax.Precision.HIGHEST)
        whitened = jnp.einsum("kij,kj->ki", inverse, loc, precision=jax.lax.Precision.HIGHEST)
        log_det = jnp.sum(jnp.log(jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)), axis=-1)
        constant = -0.5 * jnp.sum(whitened**2, axis=-1) - log_det - dim * _HALF_LOG_2PI
        return quadratic, linear, constant

    def component_log_prob(self, value: ArrayLike) -> jax.Array:
        """Per-component log densities plus log weights: ``log w_k + log N(x | k)``.

        Parameters
        ----------
        value : Float[Array, "..."] or Float[Array, "... D"]
            Points.

        Returns
        -------
        Float[Array, "... K"]
            ``value.shape + (K,)`` for scalar data, ``value.shape[:-1] + (K,)``
            for vectors.
        """
        features, coefficients = self._features_and_coefficients(value)
        return jnp.matmul(features, coefficients, precision=jax.lax.Precision.HIGHEST)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        return _logsumexp_matmul(*self._features_and_coefficients(value))

    def _features_and_coefficients(self, value):
        # The density does not depend on the frame, so neither does its gradient.
        center = jax.lax.stop_gradient(self.center)
        unit = jax.lax.stop_gradient(self.unit)
        x = (jnp.asarray(value) - center) / unit
        if not self.is_vector:
            x = x[..., None]
        if self.is_full:
            rows, cols = np.triu_indices(x.shape[-1])
            squares = x[..., rows] * x[..., cols]
        else:
            squares = x * x
        features = jnp.concatenate([squares, x, jnp.ones_like(x[..., :1])], axis=-1)
        return features, self._coefficients(center, unit)

    def sample_with_intermediates(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, list[jax.Array]]:
        key_label, key_noise = jax.random.split(key)
        labels = jax.random.categorical(
            key_label, _safe_log(self.weights), shape=sample_shape
        )
        noise = jax.random.normal(key_noise, sample_shape + self.loc.shape[1:])
        if self.is_full:
            assert self.scale_tril is not None  # is_full: the factors were given
            offset = jnp.einsum("...ij,...j->...i", self.scale_tril[labels], noise)
        else:
            assert self.scale is not None  # not is_full: the scales were given
            offset = self.scale[labels] * noise
        return self.loc[labels] + offset, [labels]

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        return self.sample_with_intermediates(key, sample_shape)[0]

    @property
    def mean(self) -> jax.Array:
        weights = self.weights[:, None] if self.is_vector else self.weights
        return jnp.sum(weights * self.loc, axis=0)
