r"""Split-merge jumps between NUTS transitions: a spare component between empty and taken.

A Gaussian cluster is fitted almost as well by one component as by two, one
of them small. The two arrangements are separated by a narrow neck that
NUTS seldom crosses, so a chain whose warmup ends with a cluster split over
a spare component stays split (``benchmarks/README.md``). These
Metropolis-Hastings jumps cross it in one step.

A *merge* of the ordered pair ``(a, b)`` gives ``a`` the pair's weight
(less a spare's share), the moment-matched location and per-dimension
variance of the pair,

.. math::

    W = w_a + w_b, \quad p = w_b / W, \quad
    M = (1 - p)\mu_a + p\mu_b, \quad
    S^2 = (1 - p)\sigma_a^2 + p\sigma_b^2 + p(1 - p)(\mu_a - \mu_b)^2,

and leaves ``b`` empty: a weight :math:`rW` with ``logit r`` drawn around
:math:`-\log(NW)` and a location and scale drawn from their priors. A
*split* is its inverse: the parts of ``a`` follow the moment-matching split
of Richardson and Green (1997), with ``logit p`` drawn from a normal,
``(u_2 + 1)/2 \sim \mathrm{Beta}(2, 2)`` and ``u_3 \sim U(0, 1)`` in each
dimension, and ``b``'s former location, scale and weight share become the
auxiliary variables of the merge back. The pair's total weight is kept, so
only the sticks between ``a`` and ``b`` change.

Which pair: a merge picks ``b`` uniformly and ``a`` by closeness to ``b``
(a softmax of minus half the standardised squared distance); a split picks
``a`` uniformly and ``b`` among the emptiest (a softmax of minus ``N`` times
the weight). The map from (position, auxiliaries) to (position,
auxiliaries) is a bijection of unconstrained coordinates; its log-Jacobian
is computed by forward-mode autodiff, so the acceptance ratio is exact in
whatever chart the sticks are in. Each jump leaves the posterior invariant,
and so does NUTS after its warmup: the chain alternates the two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jax.scipy.stats import norm

from dpgmm_ppl.reparam import coordinates_from_log_weights, log_weights_from_coordinates

__all__ = ["SPLIT_FRACTION_LOGIT", "make_jumps", "merge_proposal", "split_proposal"]

#: Mean and standard deviation of ``logit p``, the small part's share of a split.
SPLIT_FRACTION_LOGIT = (-1.5, 1.5)

#: Standard deviation of ``logit r`` around ``-log(N W)``, a spare's share after a merge.
SPARE_SHARE_LOGIT_SCALE = 2.0


def _log1m_tanh2(t):
    """``log(1 - tanh(t)**2)``, stable for large ``|t|``."""
    t = jnp.abs(t)
    return 2.0 * (jnp.log(2.0) - t - jnp.log1p(jnp.exp(-2.0 * t)))


def _log_weights(z):
    exponentials = z.get("weights_exponentials")
    return log_weights_from_coordinates(
        jnp.exp(z["alpha"]), z.get("weights_logits"),
        None if exponentials is None else jnp.exp(exponentials),
    )


def _with_log_weights(z, log_weights, num_centered):
    logits, exponentials = coordinates_from_log_weights(
        log_weights, jnp.exp(z["alpha"]), num_centered
    )
    z = dict(z)
    if "weights_logits" in z:
        z["weights_logits"] = logits
    if "weights_exponentials" in z:
        z["weights_exponentials"] = jnp.log(exponentials)
    return z


def _merge(z, aux, a, b, num_centered):
    """(split position, spare's coordinates) -> (merged position, split's coordinates)."""
    log_weights = _log_weights(z)
    log_wa, log_wb = log_weights[a], log_weights[b]
    log_total = jnp.logaddexp(log_wa, log_wb)
    p_logit = log_wb - log_wa
    p = jax.nn.sigmoid(p_logit)
    loc_a, loc_b = z["loc"][a], z["loc"][b]
    var_a, var_b = jnp.exp(2 * z["scale"][a]), jnp.exp(2 * z["scale"][b])
    within = (1 - p) * var_a + p * var_b
    var = within + p * (1 - p) * (loc_a - loc_b) ** 2
    u2 = jnp.sqrt(p * (1 - p)) * (loc_b - loc_a) / jnp.sqrt(var)
    u3_logit = jnp.log((1 - p) * var_a) - jnp.log(p * var_b)
    r_logit, spare_loc, spare_log_scale = aux["r_logit"], aux["loc"], aux["log_scale"]
    log_weights = log_weights.at[a].set(log_total + jax.nn.log_sigmoid(-r_logit))
    log_weights = log_weights.at[b].set(log_total + jax.nn.log_sigmoid(r_logit))
    merged = _with_log_weights(z, log_weights, num_centered)
    merged["loc"] = z["loc"].at[a].set((1 - p) * loc_a + p * loc_b).at[b].set(spare_loc)
    merged["scale"] = z["scale"].at[a].set(0.5 * jnp.log(var)).at[b].set(spare_log_scale)
    split_aux = {"p_logit": p_logit, "u2": jnp.arctanh(u2), "u3_logit": u3_logit}
    return merged, split_aux


def _split(z, aux, a, b, num_centered):
    """(merged position, split's coordinates) -> (split position, spare's coordinates)."""
    log_weights = _log_weights(z)
    log_wa, log_wb = log_weights[a], log_weights[b]
    log_total = jnp.logaddexp(log_wa, log_wb)
    p_logit, t2, u3_logit = aux["p_logit"], aux["u2"], aux["u3_logit"]
    u2 = jnp.tanh(t2)
    loc, log_sd = z["loc"][a], z["scale"][a]
    sd = jnp.exp(log_sd)
    loc_a = loc - u2 * sd * jnp.exp(0.5 * p_logit)
    loc_b = loc + u2 * sd * jnp.exp(-0.5 * p_logit)
    shared = _log1m_tanh2(t2) + 2 * log_sd
    log_var_a = jax.nn.log_sigmoid(u3_logit) + shared - jax.nn.log_sigmoid(-p_logit)
    log_var_b = jax.nn.log_sigmoid(-u3_logit) + shared - jax.nn.log_sigmoid(p_logit)
    spare_aux = {"r_logit": log_wb - log_wa, "loc": z["loc"][b], "log_scale": z["scale"][b]}
    log_weights = log_weights.at[a].set(log_total + jax.nn.log_sigmoid(-p_logit))
    log_weights = log_weights.at[b].set(log_total + jax.nn.log_sigmoid(p_logit))
    split = _with_log_weights(z, log_weights, num_centered)
    split["loc"] = z["loc"].at[a].set(loc_a).at[b].set(loc_b)
    split["scale"] = z["scale"].at[a].set(0.5 * log_var_a).at[b].set(0.5 * log_var_b)
    return split, spare_aux


def _log_abs_det(move, z, aux, a, b, num_centered):
    """``log |det|`` of the Jacobian of ``move`` at ``(z, aux)``, by forward-mode autodiff."""
    flat, unravel = ravel_pytree((z, aux))

    def flat_move(x):
        return ravel_pytree(move(*unravel(x), a, b, num_centered))[0]

    return jnp.linalg.slogdet(jax.jacfwd(flat_move)(flat))[1]


def _spare_log_density(aux, log_total, num_data, priors):
    """Density of a spare's coordinates: its share's logit, location and log scale."""
    mean = -jnp.log(num_data * jnp.exp(log_total))
    log_q = norm.logpdf(aux["r_logit"], mean, SPARE_SHARE_LOGIT_SCALE)
    log_q += jnp.sum(norm.logpdf(aux["loc"], priors.loc_mean, priors.loc_scale))
    # Inverse-gamma scale, in log coordinates: log p(s) + log s.
    shape, rate, log_s = priors.scale_shape, priors.scale_rate, aux["log_scale"]
    log_ig = (shape * jnp.log(rate) - jax.scipy.special.gammaln(shape)
              - (shape + 1) * log_s - rate * jnp.exp(-log_s))
    return log_q + jnp.sum(log_ig + log_s)


def _draw_spare(key, log_total, num_data, priors, event_shape):
    k1, k2, k3 = jax.random.split(key, 3)
    mean = -jnp.log(num_data * jnp.exp(log_total))
    r_logit = mean + SPARE_SHARE_LOGIT_SCALE * jax.random.normal(k1)
    loc = priors.loc_mean + priors.loc_scale * jax.random.normal(k2, event_shape)
    gamma = jax.random.gamma(k3, jnp.broadcast_to(priors.scale_shape, event_shape))
    log_scale = jnp.log(priors.scale_rate) - jnp.log(gamma)
    return {"r_logit": r_logit, "loc": loc, "log_scale": log_scale}


def _split_log_density(aux):
    mean, scale = SPLIT_FRACTION_LOGIT
    log_q = norm.logpdf(aux["p_logit"], mean, scale)
    # (u2 + 1) / 2 ~ Beta(2, 2), in atanh coordinates: 0.75 (1 - u2**2)**2.
    log_q += jnp.sum(jnp.log(0.75) + 2 * _log1m_tanh2(aux["u2"]))
    # u3 ~ U(0, 1), in logit coordinates.
    t = aux["u3_logit"]
    return log_q + jnp.sum(jax.nn.log_sigmoid(t) + jax.nn.log_sigmoid(-t))


def _draw_split(key, event_shape):
    k1, k2, k3 = jax.random.split(key, 3)
    mean, scale = SPLIT_FRACTION_LOGIT
    x = jax.random.beta(k2, 2.0, 2.0, event_shape)
    return {
        "p_logit": mean + scale * jax.random.normal(k1),
        # The clip moves a draw only with probability about 1e-12.
        "u2": jnp.arctanh(jnp.clip(2 * x - 1, -1 + 1e-6, 1 - 1e-6)),
        # The logit of a uniform draw is a standard logistic one.
        "u3_logit": jax.random.logistic(k3, event_shape),
    }


def _merge_partner_logits(z, b):
    """Logits of the component ``a`` that a merge takes ``b`` into: minus half
    the squared distance of the locations in units of the two spreads."""
    loc, var = z["loc"], jnp.exp(2 * z["scale"])
    distance = jnp.sum((loc - loc[b]) ** 2 / (var + var[b]), axis=tuple(range(1, loc.ndim)))
    return jnp.where(jnp.arange(loc.shape[0]) == b, -jnp.inf, -0.5 * distance)


def _split_partner_logits(z, a, num_data):
    """Logits of the component ``b`` that a split of ``a`` overwrites: minus
    the points it holds in expectation, so that the emptiest come first."""
    weights = jnp.exp(_log_weights(z))
    return jnp.where(jnp.arange(weights.shape[0]) == a, -jnp.inf, -num_data * weights)


def _merge_pair_log_prob(z, a, b):
    """``log P(merge (a, b))``: ``b`` uniform, ``a`` by closeness to ``b``."""
    return -jnp.log(z["loc"].shape[0]) + jax.nn.log_softmax(_merge_partner_logits(z, b))[a]


def _split_pair_log_prob(z, a, b, num_data):
    """``log P(split (a, b))``: ``a`` uniform, ``b`` among the emptiest."""
    logits = _split_partner_logits(z, a, num_data)
    return -jnp.log(z["loc"].shape[0]) + jax.nn.log_softmax(logits)[b]


def _draw_pair(key, z, is_merge, num_data):
    """A merge draws ``b`` first and ``a`` near it; a split ``a`` first and
    ``b`` among the emptiest. Returns ``(a, b)``."""
    k1, k2 = jax.random.split(key)
    first = jax.random.randint(k1, (), 0, z["loc"].shape[0])
    logits = jnp.where(
        is_merge, _merge_partner_logits(z, first), _split_partner_logits(z, first, num_data)
    )
    second = jax.random.categorical(k2, logits)
    return jnp.where(is_merge, second, first), jnp.where(is_merge, first, second)


def merge_proposal(z, aux, a, b, num_data, priors, num_centered):
    """The merge of ``(a, b)`` with the spare's coordinates ``aux``:
    ``(proposal, split coordinates, log ratio)``, the log ratio being the
    acceptance ratio's terms other than the potentials."""
    new, new_aux = _merge(z, aux, a, b, num_centered)
    log_total = jnp.logaddexp(*_log_weights(z)[jnp.stack([a, b])])
    log_ratio = (
        _split_log_density(new_aux) - _spare_log_density(aux, log_total, num_data, priors)
        + _log_abs_det(_merge, z, aux, a, b, num_centered)
        + _split_pair_log_prob(new, a, b, num_data) - _merge_pair_log_prob(z, a, b)
    )
    return new, new_aux, log_ratio


def split_proposal(z, aux, a, b, num_data, priors, num_centered):
    """The split of ``a`` into ``(a, b)`` with coordinates ``aux``, the inverse
    of :func:`merge_proposal`: ``(proposal, spare coordinates, log ratio)``."""
    new, new_aux = _split(z, aux, a, b, num_centered)
    log_total = jnp.logaddexp(*_log_weights(z)[jnp.stack([a, b])])
    log_ratio = (
        _spare_log_density(new_aux, log_total, num_data, priors) - _split_log_density(aux)
        + _log_abs_det(_split, z, aux, a, b, num_centered)
        + _merge_pair_log_prob(new, a, b) - _split_pair_log_prob(z, a, b, num_data)
    )
    return new, new_aux, log_ratio


def _propose(key, z, num_data, priors, num_centered):
    """A merge or a split (probability 1/2 each) of ``z``: ``(proposal, log ratio)``.

    The log ratio is everything in the acceptance ratio but the potentials:
    the auxiliaries' densities, the log-Jacobian and the pair's probabilities.
    """
    k_direction, k_pair, k_aux = jax.random.split(key, 3)
    is_merge = jax.random.bernoulli(k_direction)
    a, b = _draw_pair(k_pair, z, is_merge, num_data)
    event_shape = z["loc"].shape[1:]
    log_total = jnp.logaddexp(*_log_weights(z)[jnp.stack([a, b])])

    def merge(_):
        aux = _draw_spare(k_aux, log_total, num_data, priors, event_shape)
        return merge_proposal(z, aux, a, b, num_data, priors, num_centered)[::2]

    def split(_):
        aux = _draw_split(k_aux, event_shape)
        return split_proposal(z, aux, a, b, num_data, priors, num_centered)[::2]

    return jax.lax.cond(is_merge, merge, split, None)


def make_jumps(potential_fn, num_centered, num_jumps):
    """The jumps of one transition, as a function of the sampler's state.

    Parameters
    ----------
    potential_fn : Callable[[dict], Array]
        Minus the log density of an unconstrained position of a DP-GMM with
        diagonal (or 1-d) covariances, in the non-centred chart.
    num_centered : int
        How many of the first sticks are centred in that chart.
    num_jumps : int
        Metropolis-Hastings proposals per call, each a merge or a split
        with probability 1/2.

    Returns
    -------
    Callable
        ``jump(key, z, potential, grad, num_data, priors) -> (z, potential,
        grad, accepted)``: from the position ``z`` with its potential and
        gradient, the position after the proposals, its potential and
        gradient (recomputed only when a proposal was accepted) and the
        number accepted. ``priors`` are the priors in the frame of ``z``.
    """

    def jump(key, z, potential, grad, num_data, priors):
        def one_jump(carry, key):
            z, potential = carry
            new, log_ratio = _propose(key, z, num_data, priors, num_centered)
            new_potential = potential_fn(new)
            log_accept = potential - new_potential + log_ratio
            finite = jnp.isfinite(log_accept) & jnp.all(jnp.isfinite(ravel_pytree(new)[0]))
            uniform = jax.random.uniform(jax.random.fold_in(key, 1))
            accept = finite & (jnp.log(uniform) < log_accept)
            z = jax.tree_util.tree_map(lambda x, y: jnp.where(accept, x, y), new, z)
            return (z, jnp.where(accept, new_potential, potential)), accept

        keys = jax.random.split(key, num_jumps)
        (z, potential), accepted = jax.lax.scan(one_jump, (z, potential), keys)
        potential, grad = jax.lax.cond(
            jnp.any(accepted),
            jax.value_and_grad(potential_fn),
            lambda z: (potential, grad),
            z,
        )
        return z, potential, grad, jnp.sum(accepted)

    return jump
