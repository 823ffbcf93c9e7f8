r"""A non-centred parameterisation of the stick-breaking weights.

Under :class:`~dpgmm_ppl.StickBreakingWeights` each stick is
:math:`v_k \sim \mathrm{Beta}(1, \alpha)`, which is the same as

.. math:: \log(1 - v_k) = -e_k / \alpha, \qquad e_k \sim \mathrm{Exponential}(1).

Sampling :math:`e_k` instead of the weights makes the prior of the sampled
coordinates independent of :math:`\alpha`. In NumPyro's own (centred) chart
the unconstrained stick coordinates of the components the data do not use
spread over a range proportional to :math:`1/\alpha`: a funnel between
``alpha`` and the spare sticks, which NUTS explores with deep trees and
divergences when ``alpha`` is small. In the non-centred chart those
coordinates are ``log e_k`` with a fixed Gumbel-like prior, and a stick the
data do pin down becomes a straight line ``log e_k = log alpha + c`` in the
unconstrained space, which a dense mass matrix absorbs.

A stick the data do pin down is better left centred: ``num_centered`` keeps
the first sticks in NumPyro's own chart (the components the data occupy,
once they are put first), and non-centres only the rest.

The reparameterisation changes the coordinates, not the model: the weights
are the same function of the draws, and the log joint density of
``(alpha, weights, loc, scale)`` is unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.typing import ArrayLike
from numpyro.distributions import constraints
from numpyro.infer.reparam import Reparam

from dpgmm_ppl.distributions import StickBreakingWeights, _safe_log, log_stick_breaking

__all__ = [
    "NonCenteredStickBreaking",
    "StickLogit",
    "coordinates_from_log_weights",
    "exponentials_from_weights",
    "log_weights_from_coordinates",
]


def exponentials_from_weights(weights: ArrayLike, concentration: ArrayLike) -> jax.Array:
    r"""The :math:`e_k = -\alpha \log(1 - v_k)` of simplex weights.

    ``1 - v_k`` is the ratio of the stick remaining after component ``k`` to
    the stick remaining before it, both computed as reverse cumulative sums
    and compared in log space, so that float32 keeps the tail.

    Parameters
    ----------
    weights : Float[Array, "... K"]
        Points of the simplex.
    concentration : float or Float[Array, "..."]
        :math:`\alpha`.

    Returns
    -------
    Float[Array, "... K-1"]

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> e = exponentials_from_weights(jnp.array([0.5, 0.25, 0.25]), 2.0)
    >>> [round(float(v), 4) for v in e]
    [1.3863, 1.3863]
    """
    weights = jnp.asarray(weights)
    log_remaining = _safe_log(jnp.flip(jnp.cumsum(jnp.flip(weights, -1), -1), -1))
    log1m_sticks = log_remaining[..., 1:] - log_remaining[..., :-1]
    return -jnp.asarray(concentration)[..., None] * log1m_sticks


def log_weights_from_coordinates(
    concentration: ArrayLike,
    logits: jax.Array | None = None,
    exponentials: jax.Array | None = None,
) -> jax.Array:
    r"""Log weights from a position's stick coordinates, in log space throughout.

    Parameters
    ----------
    concentration : Float[Array, "..."]
        :math:`\alpha`.
    logits : Float[Array, "... J"], optional
        The centred sticks' :math:`\operatorname{logit} v_k` (site ``weights_logits``).
    exponentials : Float[Array, "... K-1-J"], optional
        The non-centred sticks' :math:`e_k` (site ``weights_exponentials``,
        constrained: positive).

    Returns
    -------
    Float[Array, "... K"]

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> halves = 2.0 * jnp.log(2.0) * jnp.ones(2)  # e = alpha log 2: every stick 1/2
    >>> w = jnp.exp(log_weights_from_coordinates(2.0, exponentials=halves))
    >>> [round(float(v), 4) for v in w]
    [0.5, 0.25, 0.25]
    """
    concentration = jnp.asarray(concentration)
    log_sticks, log1m_sticks = [], []
    if logits is not None:
        log_sticks.append(jax.nn.log_sigmoid(logits))
        log1m_sticks.append(jax.nn.log_sigmoid(-logits))
    if exponentials is not None:
        log1m = -exponentials / concentration[..., None]
        log_sticks.append(jnp.log(-jnp.expm1(log1m)))
        log1m_sticks.append(log1m)
    return log_stick_breaking(jnp.concatenate(log_sticks, -1), jnp.concatenate(log1m_sticks, -1))


def coordinates_from_log_weights(
    log_weights: ArrayLike, concentration: ArrayLike, num_centered: int
) -> tuple[jax.Array, jax.Array]:
    r"""The inverse of :func:`log_weights_from_coordinates`: ``(logits, exponentials)``.

    Computed from the log weights (reverse cumulative log-sum-exps), so that
    components whose weights underflow float32 keep finite coordinates.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> logits, e = coordinates_from_log_weights(jnp.log(jnp.array([0.5, 0.25, 0.25])), 2.0, 1)
    >>> round(float(logits[0]), 4), round(float(e[0]), 4)
    (0.0, 1.3863)
    """
    log_weights = jnp.asarray(log_weights)
    axis = log_weights.ndim - 1
    log_remaining = jnp.flip(jax.lax.cumlogsumexp(jnp.flip(log_weights, axis), axis=axis), axis)
    # log(1 - v_k) = log R_{k+1} - log R_k; logit v_k = log w_k - log R_{k+1}.
    log1m_sticks = log_remaining[..., 1:] - log_remaining[..., :-1]
    logits = log_weights[..., :num_centered] - log_remaining[..., 1 : num_centered + 1]
    exponentials = -jnp.asarray(concentration)[..., None] * log1m_sticks[..., num_centered:]
    return logits, exponentials


class StickLogit(dist.Distribution):
    r"""The logit :math:`u = \log v - \log(1 - v)` of a stick :math:`v \sim \mathrm{Beta}(1, \alpha)`.

    .. math:: \log p(u) = \log\alpha + \log\sigma(u) + \alpha \log\sigma(-u),

    with :math:`\sigma` the logistic function, evaluated as log-sigmoids so
    that a stick within float32's rounding of 0 or 1 keeps a finite density
    (through ``Beta`` and NumPyro's sigmoid transform, ``v`` rounds to 1 and
    the density to infinity when :math:`\alpha < 1`). The centred sticks
    of :class:`NonCenteredStickBreaking` are drawn from it.

    Parameters
    ----------
    concentration : float or Float[Array, "..."]
        :math:`\alpha > 0`.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from numpyro.distributions import Beta
    >>> u = jnp.array([-2.0, 0.5, 30.0])
    >>> v = jax.nn.sigmoid(u[:2])
    >>> direct = Beta(1.0, 0.5).log_prob(v) + jnp.log(v * (1 - v))
    >>> bool(jnp.allclose(StickLogit(0.5).log_prob(u[:2]), direct, atol=1e-5))
    True
    >>> bool(jnp.isfinite(StickLogit(0.5).log_prob(u[2])))
    True
    """

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.real

    def __init__(self, concentration: ArrayLike, *, validate_args: bool | None = None) -> None:
        self.concentration = jnp.asarray(concentration)
        super().__init__(jnp.shape(self.concentration), validate_args=validate_args)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        # log(1 - v) = -e / alpha with e ~ Exponential(1), as in the non-centred chart.
        exponentials = jax.random.exponential(key, sample_shape + self.batch_shape)
        log1m = -exponentials / self.concentration
        return jnp.log(-jnp.expm1(log1m)) - log1m

    def log_prob(self, value: jax.Array) -> jax.Array:
        alpha = self.concentration
        return jnp.log(alpha) + jax.nn.log_sigmoid(value) + alpha * jax.nn.log_sigmoid(-value)


class NonCenteredStickBreaking(Reparam):
    r"""Reparameterise a :class:`~dpgmm_ppl.StickBreakingWeights` site.

    The site ``name`` becomes deterministic; a new sample site
    ``f"{name}_exponentials"`` holds :math:`e_1, \dots, e_{K-1}`, independent
    ``Exponential(1)`` draws, and the weights follow from
    :math:`\log(1 - v_k) = -e_k/\alpha` in log space. With one component
    there is nothing to sample and the weight is 1.

    Parameters
    ----------
    num_centered : int
        How many of the first sticks stay centred: the logits of their
        fractions :math:`v_k \sim \mathrm{Beta}(1, \alpha)` are the site
        ``f"{name}_logits"`` (:class:`StickLogit`, the coordinate NumPyro's
        own chart gives a Beta site, with a density that stays finite in
        float32), and only the later sticks are non-centred. A stick whose fraction the data pin down is a narrow
        coordinate of its own when centred, but a line
        :math:`\log e_k = \log\alpha + c` when not; a stick the data
        leave free is the other way round (see :mod:`dpgmm_ppl.infer.nuts`).
        ``0`` (the default) non-centres every stick; a number above ``K - 1``
        centres them all.

    Examples
    --------
    >>> import jax
    >>> from numpyro.handlers import reparam, seed, trace
    >>> from dpgmm_ppl import dpgmm
    >>> model = reparam(dpgmm, config={"weights": NonCenteredStickBreaking()})
    >>> sites = trace(seed(model, 0)).get_trace(num_data=4, num_components=3)
    >>> sites["weights_exponentials"]["value"].shape, sites["weights"]["type"]
    ((2,), 'deterministic')
    >>> partly = reparam(dpgmm, config={"weights": NonCenteredStickBreaking(num_centered=1)})
    >>> sites = trace(seed(partly, 0)).get_trace(num_data=4, num_components=3)
    >>> sites["weights_logits"]["value"].shape, sites["weights_exponentials"]["value"].shape
    ((1,), (1,))
    """

    def __init__(self, num_centered: int = 0) -> None:
        if isinstance(num_centered, bool) or not isinstance(num_centered, int) or num_centered < 0:
            raise ValueError(
                f"num_centered must be a non-negative int, got {num_centered!r}"
            )
        self.num_centered = num_centered

    def __call__(
        self, name: str, fn: dist.Distribution, obs: ArrayLike | None
    ) -> tuple[None, jax.Array]:
        if obs is not None:
            raise ValueError(
                f"NonCenteredStickBreaking reparameterises latent sites only; "
                f"site {name!r} is observed"
            )
        fn, expand_shape, event_dim = self._unwrap(fn)
        if not isinstance(fn, StickBreakingWeights):
            raise TypeError(
                f"NonCenteredStickBreaking applies to StickBreakingWeights sites; "
                f"site {name!r} has {type(fn).__name__}"
            )
        concentration = fn.concentration
        num_sticks = fn.num_components - 1
        num_centered = min(self.num_centered, num_sticks)
        batch_shape = jnp.shape(concentration)
        if num_sticks == 0:
            return None, jnp.ones(batch_shape + (1,), jnp.result_type(float))
        logits = exponentials = None
        if num_centered:
            shape = batch_shape + (num_centered,)
            logits_prior = StickLogit(jnp.broadcast_to(concentration[..., None], shape))
            logits = numpyro.sample(
                f"{name}_logits", self._wrap(logits_prior.to_event(1), expand_shape, event_dim)
            )
        if num_sticks > num_centered:
            unit = dist.Exponential(jnp.ones(batch_shape + (num_sticks - num_centered,)))
            exponentials = numpyro.sample(
                f"{name}_exponentials", self._wrap(unit.to_event(1), expand_shape, event_dim)
            )
        log_weights = log_weights_from_coordinates(concentration, logits, exponentials)
        return None, jnp.exp(log_weights)
