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

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.util import promote_shapes, validate_sample

__all__ = [
    "StickBreakingWeights",
    "GaussianMixture",
    "stick_breaking",
    "log_stick_breaking",
    "sticks_from_weights",
]


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

    Its support is NumPyro's ``constraints.simplex``, so inference runs on the
    unconstrained space through NumPyro's own stick-breaking transform.

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
    support = constraints.simplex
    reparametrized_params = []
    pytree_data_fields = ("concentration",)
    pytree_aux_fields = ("num_components",)

    def __init__(self, concentration, num_components, *, validate_args=None):
        if isinstance(num_components, bool) or not isinstance(
            num_components, int
        ):
            raise TypeError(
                "num_components must be an int >= 1, "
                f"got {num_components!r} of type {type(num_components).__name__}"
            )
        if num_components < 1:
            raise ValueError(f"num_components must be >= 1, got {num_components}")
        self.concentration = jnp.asarray(concentration)
        self.num_components = num_components
        super().__init__(
            batch_shape=jnp.shape(self.concentration),
            event_shape=(num_components,),
            validate_args=validate_args,
        )

    def sample(self, key, sample_shape=()):
        # Beta(1, a) has 1 - V = U ** (1 / a), so log(1 - V) = log(U) / a is exact
        # in log space even when V rounds to 1 in float32.
        shape = sample_shape + self.batch_shape + (self.num_components - 1,)
        uniform = jax.random.uniform(
            key, shape, minval=jnp.finfo(jnp.result_type(float)).tiny
        )
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

    Data are scalars (``loc`` of shape ``(K,)``) or vectors with a diagonal
    covariance (``loc`` of shape ``(K, D)``).

    Parameters
    ----------
    weights : Float[Array, "K"]
        Mixture weights on the simplex (zeros allowed).
    loc : Float[Array, "K"] or Float[Array, "K D"]
        Component means.
    scale : Float[Array, "K"] or Float[Array, "K D"]
        Component standard deviations, positive.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> mixture = GaussianMixture(jnp.array([0.5, 0.5]), jnp.zeros(2), jnp.ones(2))
    >>> round(float(mixture.log_prob(0.0)), 4)
    -0.9189
    """

    arg_constraints = {
        "weights": constraints.simplex,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real
    pytree_data_fields = ("weights", "loc", "scale")
    pytree_aux_fields = ("is_vector",)

    def __init__(self, weights, loc, scale, *, validate_args=None):
        weights, loc, scale = jnp.asarray(weights), jnp.asarray(loc), jnp.asarray(scale)
        self.is_vector = loc.ndim >= 2
        loc, scale = promote_shapes(loc, scale)
        loc, scale = jnp.broadcast_arrays(loc, scale)
        self.weights, self.loc, self.scale = weights, loc, scale
        event_shape = loc.shape[-1:] if self.is_vector else ()
        if self.is_vector:
            self.support = constraints.real_vector
        super().__init__(
            batch_shape=(), event_shape=event_shape, validate_args=validate_args
        )

    def component_log_prob(self, value):
        """Per-component log densities plus log weights, shape ``value.shape[:-1] + (K,)``."""
        value = jnp.asarray(value)
        if self.is_vector:
            x = value[..., None, :]
        else:
            x = value[..., None]
        z = (x - self.loc) / self.scale
        log_normal = -0.5 * z**2 - jnp.log(self.scale) - 0.5 * jnp.log(2 * jnp.pi)
        if self.is_vector:
            log_normal = jnp.sum(log_normal, -1)
        return _safe_log(self.weights) + log_normal

    def log_prob(self, value):
        return logsumexp(self.component_log_prob(value), axis=-1)

    def sample_with_intermediates(self, key, sample_shape=()):
        key_label, key_noise = jax.random.split(key)
        labels = jax.random.categorical(
            key_label, _safe_log(self.weights), shape=sample_shape
        )
        noise = jax.random.normal(key_noise, sample_shape + self.loc.shape[1:])
        return self.loc[labels] + self.scale[labels] * noise, [labels]

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    @property
    def mean(self):
        weights = self.weights[:, None] if self.is_vector else self.weights
        return jnp.sum(weights * self.loc, axis=0)
