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

The reparameterisation changes the coordinates, not the model: the weights
are the same function of the draws, and the log joint density of
``(alpha, weights, loc, scale)`` is unchanged.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.infer.reparam import Reparam

from dpgmm_ppl.distributions import StickBreakingWeights, _safe_log, log_stick_breaking

__all__ = ["NonCenteredStickBreaking", "exponentials_from_weights"]


def exponentials_from_weights(weights, concentration):
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


class NonCenteredStickBreaking(Reparam):
    r"""Reparameterise a :class:`~dpgmm_ppl.StickBreakingWeights` site.

    The site ``name`` becomes deterministic; a new sample site
    ``f"{name}_exponentials"`` holds :math:`e_1, \dots, e_{K-1}`, independent
    ``Exponential(1)`` draws, and the weights follow from
    :math:`\log(1 - v_k) = -e_k/\alpha` in log space. With one component
    there is nothing to sample and the weight is 1.

    Examples
    --------
    >>> import jax
    >>> from numpyro.handlers import reparam, seed, trace
    >>> from dpgmm_ppl import dpgmm
    >>> model = reparam(dpgmm, config={"weights": NonCenteredStickBreaking()})
    >>> sites = trace(seed(model, 0)).get_trace(num_data=4, num_components=3)
    >>> sites["weights_exponentials"]["value"].shape, sites["weights"]["type"]
    ((2,), 'deterministic')
    """

    def __call__(self, name, fn, obs):
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
        batch_shape = jnp.shape(concentration)
        if num_sticks == 0:
            return None, jnp.ones(batch_shape + (1,), jnp.result_type(float))
        unit = dist.Exponential(jnp.ones(batch_shape + (num_sticks,))).to_event(1)
        exponentials = numpyro.sample(
            f"{name}_exponentials", self._wrap(unit, expand_shape, event_dim)
        )
        log1m_sticks = -exponentials / concentration[..., None]
        log_sticks = jnp.log(-jnp.expm1(log1m_sticks))
        return None, jnp.exp(log_stick_breaking(log_sticks, log1m_sticks))
