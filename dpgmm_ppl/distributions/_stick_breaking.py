"""The truncated stick-breaking (GEM) prior on the simplex, and its bijection.

:class:`StickBreakingWeights` is the distribution; :func:`stick_breaking`,
:func:`log_stick_breaking` and :func:`sticks_from_weights` map between stick
fractions and weights; :class:`LogSpaceStickBreakingTransform` is NumPyro's
stick-breaking bijection with its log-Jacobian summed in log space, registered
for the support of :class:`StickBreakingWeights` only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints
from numpyro.distributions.transforms import StickBreakingTransform, biject_to
from numpyro.distributions.util import validate_sample

from dpgmm_ppl.distributions._log_space import _safe_log


def log_stick_breaking(log_sticks: jax.Array, log1m_sticks: jax.Array) -> jax.Array:
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


def stick_breaking(sticks: ArrayLike) -> jax.Array:
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


def sticks_from_weights(weights: ArrayLike) -> jax.Array:
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

    def log_abs_det_jacobian(
        self, x: jax.Array, y: jax.Array, intermediates: object = None
    ) -> jax.Array:
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
    reparametrized_params: list[str] = []
    pytree_data_fields = ("concentration",)
    pytree_aux_fields = ("num_components",)

    def __init__(
        self,
        concentration: ArrayLike,
        num_components: int,
        *,
        validate_args: bool | None = None,
    ) -> None:
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

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
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
    def log_prob(self, value: jax.Array) -> jax.Array:
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
    def mean(self) -> jax.Array:
        ratio = (self.concentration / (1.0 + self.concentration))[..., None]
        k = jnp.arange(self.num_components)
        head = ratio**k / (1.0 + self.concentration[..., None])
        last = ratio[..., 0] ** (self.num_components - 1)
        return head.at[..., -1].set(last)
