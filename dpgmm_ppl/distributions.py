"""NumPyro distributions for truncated Dirichlet-process mixtures.

Two distributions that can be used in any NumPyro model:

- :class:`StickBreakingWeights`, the truncated GEM (stick-breaking) prior on
  the probability simplex;
- :class:`GaussianMixture`, a Gaussian mixture likelihood with the component
  labels summed out.

Both work in log space, so that float32 never produces a negative weight, a
weight that is NaN, or a ``log(0)`` inside a gradient.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.transforms import StickBreakingTransform, biject_to
from numpyro.distributions.util import promote_shapes, validate_sample

__all__ = [
    "StickBreakingWeights",
    "GaussianMixture",
    "stick_breaking",
    "log_stick_breaking",
    "sticks_from_weights",
]


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


@jax.custom_jvp
def _safe_log(x):
    """Log that maps 0 to ``log(tiny)``, with a derivative that cannot overflow.

    The value is exact down to the smallest normal float. The derivative is
    ``1 / max(x, sqrt(tiny))``: below about 1e-19 in float32 it is damped, so
    that sums of ``1/w`` over vanishing weights (the stick-breaking Jacobian,
    the mixture's log-weights) stay finite instead of overflowing to inf and
    turning into NaN further down the chain rule. Weights that small change no
    density by a representable amount.
    """
    tiny = jnp.finfo(jnp.result_type(x, float)).tiny
    return jnp.log(jnp.clip(x, min=tiny))


@_safe_log.defjvp
def _safe_log_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    floor = jnp.sqrt(jnp.finfo(jnp.result_type(x, float)).tiny)
    return _safe_log(x), dx / jnp.maximum(x, floor)


def _shifted_exponentials(features, coefficients):
    """``exp(z - max z)`` and its row sums, for ``z = features @ coefficients``."""
    # HIGHEST: accelerators may otherwise round float32 products to TF32/bfloat16.
    logits = jnp.matmul(features, coefficients, precision=jax.lax.Precision.HIGHEST)
    shift = jax.lax.stop_gradient(jnp.max(logits, axis=-1))
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    exponentials = jnp.exp(logits - shift[..., None])
    return exponentials, jnp.sum(exponentials, axis=-1), shift


@jax.custom_jvp
def _logsumexp_matmul(features, coefficients):
    """``logsumexp(features @ coefficients, axis=-1)``; features (..., F), coefficients (F, K).

    The derivative is the usual one, with the responsibilities
    ``exp(z - lse)`` never formed: the tangent is written as
    ``sum((features / s) * (e @ d_coefficients.T), -1)``, whose transpose
    (reverse mode) contracts ``features * cotangent / s`` (N x F) against the
    exponentials ``e`` (N x K) kept from the forward pass. Letting JAX
    differentiate ``logsumexp`` instead costs one more pass over the N x K
    array, about 20 % of a MAP step on the seed data (2 CPU cores).
    """
    exponentials, total, shift = _shifted_exponentials(features, coefficients)
    return jnp.log(total) + shift


def _logsumexp_matmul_jvp(primals, tangents):
    features, coefficients = primals
    d_features, d_coefficients = tangents
    exponentials, total, shift = _shifted_exponentials(features, coefficients)
    value = jnp.log(total) + shift
    inverse_total = (1.0 / total)[..., None]
    tangent = jnp.zeros_like(value)
    highest = jax.lax.Precision.HIGHEST
    if not isinstance(d_coefficients, SymbolicZero):
        weighted = jnp.matmul(exponentials, d_coefficients.T, precision=highest)
        tangent = tangent + jnp.sum(features * inverse_total * weighted, axis=-1)
    if not isinstance(d_features, SymbolicZero):
        weighted = jnp.matmul(exponentials, coefficients.T, precision=highest)
        tangent = tangent + jnp.sum(d_features * inverse_total * weighted, axis=-1)
    return value, tangent


_logsumexp_matmul.defjvp(_logsumexp_matmul_jvp, symbolic_zeros=True)


def log_stick_breaking(log_sticks, log1m_sticks):
    r"""Log mixture weights from the logs of stick fractions and their complements.

    With stick fractions :math:`v_1, \dots, v_{K-1}`, the weights are

    .. math:: w_k = v_k \prod_{j<k} (1 - v_j), \qquad w_K = \prod_{j<K} (1 - v_j).

    Parameters
    ----------
    log_sticks : Float[Array, "... K-1"]
        :math:`\log v_k`.
    log1m_sticks : Float[Array, "... K-1"]
        :math:`\log(1 - v_k)`, passed separately so that a stick close to 1 keeps
        its precision.

    Returns
    -------
    Float[Array, "... K"]
        :math:`\log w_k`; the last entry is the remainder of the stick.
    """
    if log1m_sticks.shape[-1] == 0:  # one component takes the whole stick
        return jnp.zeros(log1m_sticks.shape[:-1] + (1,), log1m_sticks.dtype)
    log_remaining = jnp.cumsum(log1m_sticks, axis=-1)
    log_remaining_before = jnp.concatenate(
        [jnp.zeros_like(log_remaining[..., :1]), log_remaining[..., :-1]], axis=-1
    )
    return jnp.concatenate(
        [log_sticks + log_remaining_before, log_remaining[..., -1:]], axis=-1
    )


def stick_breaking(sticks):
    """Mixture weights from stick fractions in (0, 1); the last weight is the remainder.

    Parameters
    ----------
    sticks : Float[Array, "... K-1"]
        Stick fractions.

    Returns
    -------
    Float[Array, "... K"]
        Non-negative weights that sum to one.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> stick_breaking(jnp.array([0.5, 0.5])).tolist()
    [0.5, 0.25, 0.25]
    """
    sticks = jnp.asarray(sticks)
    return jnp.exp(log_stick_breaking(jnp.log(sticks), jnp.log1p(-sticks)))


def sticks_from_weights(weights):
    """Invert :func:`stick_breaking`: the stick fractions of simplex weights.

    The remaining stick before component ``k`` is computed as a reverse cumulative
    sum of the weights, not as ``1 - cumsum``, so it stays non-negative in float32.

    Parameters
    ----------
    weights : Float[Array, "... K"]
        Points of the simplex.

    Returns
    -------
    Float[Array, "... K-1"]
        Stick fractions :math:`v_k = w_k / \\sum_{j \\ge k} w_j`.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> sticks_from_weights(jnp.array([0.5, 0.25, 0.25])).tolist()
    [0.5, 0.5]
    """
    weights = jnp.asarray(weights)
    remaining = jnp.flip(jnp.cumsum(jnp.flip(weights, -1), -1), -1)
    return jnp.exp(_safe_log(weights[..., :-1]) - _safe_log(remaining[..., :-1]))


class _StickSimplex(constraints._Simplex):
    """The probability simplex, as the support of :class:`StickBreakingWeights`.

    It is NumPyro's simplex; only its bijection from the unconstrained space
    differs (:class:`LogSpaceStickBreakingTransform`).
    """


class LogSpaceStickBreakingTransform(StickBreakingTransform):
    r"""NumPyro's stick-breaking bijection with its log-Jacobian summed in log space.

    The map is NumPyro's; its log-determinant,
    :math:`\sum_k [\log y_k + \log(1 - z_k)]` with :math:`z_k` the fraction of
    the remaining stick, is evaluated as
    :math:`\sum_k [\log z_k + \sum_{j \le k} \log(1 - z_j)]` from the
    unconstrained coordinates, so it stays finite when a weight :math:`y_k`
    underflows in float32 (NumPyro's takes :math:`\log y_k` and returns
    ``-inf`` there).
    """

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        x = x - jnp.log(x.shape[-1] - jnp.arange(x.shape[-1]))
        # The forward map clips each fraction to [tiny, 1 - eps]; so do the logs.
        finfo = jnp.finfo(jnp.result_type(x))
        log_fraction = jnp.maximum(jax.nn.log_sigmoid(x), jnp.log(finfo.tiny))
        log_rest = jnp.maximum(jax.nn.log_sigmoid(-x), jnp.log(finfo.eps))
        return jnp.sum(log_fraction + jnp.cumsum(log_rest, axis=-1), axis=-1)


_stick_simplex = _StickSimplex()
biject_to.register(_StickSimplex)(lambda constraint: LogSpaceStickBreakingTransform())


class StickBreakingWeights(Distribution):
    r"""Truncated stick-breaking (GEM) distribution on the simplex.

    Sticks :math:`v_k \sim \mathrm{Beta}(1, \alpha)` for :math:`k < K` are broken
    into weights :math:`w_k = v_k \prod_{j<k}(1 - v_j)`; the last component takes
    what remains, so the weights sum to one. The density of the weights is the
    product of the Beta densities of the sticks times the Jacobian of the map
    from weights to sticks, which simplifies to

    .. math::

        \log p(w \mid \alpha) = (K - 1)\log\alpha + (\alpha - 1)\log w_K
            - \sum_{k=1}^{K-1} \log r_k, \qquad r_k = \sum_{j \ge k} w_j .

    Its support is NumPyro's simplex, so inference runs on the unconstrained
    space through NumPyro's own stick-breaking transform; only its
    log-Jacobian is summed in log space
    (:class:`LogSpaceStickBreakingTransform`), so that the potential stays
    finite when a weight underflows.

    Parameters
    ----------
    concentration : float or Array
        :math:`\alpha > 0`; smaller values put more mass on the first components.
    num_components : int
        Truncation level :math:`K \ge 1`.

    Examples
    --------
    >>> import jax
    >>> weights = StickBreakingWeights(1.0, 5).sample(jax.random.PRNGKey(0))
    >>> weights.shape, bool(abs(weights.sum() - 1.0) < 1e-6)
    ((5,), True)
    """

    arg_constraints = {"concentration": constraints.positive}
    support = _stick_simplex
    reparametrized_params = []
    pytree_data_fields = ("concentration",)
    pytree_aux_fields = ("num_components",)

    def __init__(self, concentration, num_components, *, validate_args=None):
        if isinstance(num_components, (bool, np.bool_)) or not isinstance(
            num_components, (int, np.integer)
        ):
            raise TypeError(
                "num_components must be an int >= 1, "
                f"got {num_components!r} of type {type(num_components).__name__}"
            )
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.concentration = jnp.asarray(concentration)
        self.num_components = int(num_components)
        super().__init__(
            batch_shape=jnp.shape(self.concentration),
            event_shape=(num_components,),
            validate_args=validate_args,
        )

    def sample(self, key, sample_shape=()):
        # Beta(1, a) has 1 - V = U ** (1 / a), so log(1 - V) = log(U) / a is exact
        # in log space even when V rounds to 1 in float32.
        shape = sample_shape + self.batch_shape + (self.num_components - 1,)
        # In the concentration's precision (float32 stays float32 under x64).
        dtype = jnp.result_type(self.concentration, float)
        uniform = jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny)
        log1m_sticks = jnp.log(uniform) / self.concentration[..., None]
        log_sticks = jnp.log(-jnp.expm1(log1m_sticks))
        return jnp.exp(log_stick_breaking(log_sticks, log1m_sticks))

    @validate_sample
    def log_prob(self, value):
        num_components = self.num_components
        remaining = jnp.flip(jnp.cumsum(jnp.flip(value, -1), -1), -1)
        log_jacobian = -jnp.sum(_safe_log(remaining[..., :-1]), -1)
        alpha = self.concentration
        return (
            (num_components - 1) * jnp.log(alpha)
            + (alpha - 1.0) * _safe_log(value[..., -1])
            + log_jacobian
        )

    @property
    def mean(self):
        ratio = (self.concentration / (1.0 + self.concentration))[..., None]
        k = jnp.arange(self.num_components)
        head = ratio**k / (1.0 + self.concentration[..., None])
        last = ratio[..., 0] ** (self.num_components - 1)
        return head.at[..., -1].set(last)


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

    def __init__(
        self,
        weights,
        loc,
        scale=None,
        *,
        scale_tril=None,
        center=None,
        unit=None,
        validate_args=None,
    ):
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

    def component_log_prob(self, value):
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

    def log_prob(self, value):
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

    def sample_with_intermediates(self, key, sample_shape=()):
        key_label, key_noise = jax.random.split(key)
        labels = jax.random.categorical(
            key_label, _safe_log(self.weights), shape=sample_shape
        )
        noise = jax.random.normal(key_noise, sample_shape + self.loc.shape[1:])
        if self.is_full:
            offset = jnp.einsum("...ij,...j->...i", self.scale_tril[labels], noise)
        else:
            offset = self.scale[labels] * noise
        return self.loc[labels] + offset, [labels]

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    @property
    def mean(self):
        weights = self.weights[:, None] if self.is_vector else self.weights
        return jnp.sum(weights * self.loc, axis=0)
