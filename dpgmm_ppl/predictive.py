"""Replicated data sets from a fit's mixtures: the posterior predictive.

Each replicate is a data set of the observed data's shape drawn from one
draw's mixture (a component by its weight, then a point from it), as
NumPyro's :class:`~numpyro.infer.Predictive` draws the ``obs`` site of the
model. :meth:`Fit.to_arviz(posterior_predictive=True)
<dpgmm_ppl.Fit.to_arviz>` puts them in ArviZ's ``posterior_predictive``
group beside ``observed_data``, for posterior predictive checks
(``az.plot_ppc`` on ArviZ 0.x, ``az.plot_ppc_dist`` on 1.x).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax
import numpy as np

from dpgmm_ppl._validation import check_positive_int, check_rng_key

if TYPE_CHECKING:
    from dpgmm_ppl.result import Fit

__all__ = ["OBSERVED_SITE", "draw_indices", "posterior_predictive"]

#: The observed site of :func:`~dpgmm_ppl.dpgmm`, and ArviZ's variable name for it.
OBSERVED_SITE = "obs"
#: Replicates drawn at once.
_DRAW_BATCH = 64


@functools.partial(jax.jit, static_argnums=(4,))
def _replicates(keys, weights, loc, spread, num_points):
    """One data set of ``num_points`` points per stacked draw: ``(S, num_points, ...)``."""
    from dpgmm_ppl.mixtures import mixture_from_parameters

    def one(args):
        key, *params = args
        return mixture_from_parameters(*params).sample(key, (num_points,))

    return jax.lax.map(one, (keys, weights, loc, spread), batch_size=_DRAW_BATCH)


def draw_indices(num_draws: int, num_samples: int) -> np.ndarray:
    """Which draw of a chain each of ``num_samples`` replicates comes from.

    Evenly spread over the draws when there are fewer replicates than draws,
    each draw repeated in turn when there are more (a MAP restart, one draw).

    Examples
    --------
    >>> draw_indices(10, 4).tolist(), draw_indices(1, 3).tolist()
    ([0, 2, 5, 7], [0, 0, 0])
    """
    return (np.arange(num_samples) * num_draws) // num_samples


def posterior_predictive(
    fit: Fit, rng_key: jax.Array | int = 0, *, num_samples: int | None = None
) -> dict[str, np.ndarray]:
    """Replicated data sets of the observed data's shape, one per draw.

    Parameters
    ----------
    fit : Fit
        Any fit.
    rng_key : int or PRNGKey
        The same key gives the same replicates.
    num_samples : int, optional
        Replicates per chain. ``None``: one per draw. Fewer than the draws
        take evenly spaced draws; more repeat each draw (useful for MAP,
        whose restarts have one draw each).

    Returns
    -------
    dict
        ``{"obs": array}`` of shape ``(chain, num_samples, n)`` for scalar
        data, ``(chain, num_samples, n, D)`` for vectors, in the data's
        dtype: NumPyro's :class:`~numpyro.infer.Predictive` layout with the
        chains kept apart.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((2, 1)), "weights": np.ones((2, 1, 1)),
    ...            "loc": np.full((2, 1, 1), 5.0), "scale": np.full((2, 1, 1), 1e-3)}
    >>> fit = Fit("map", samples, {"lp": np.zeros((2, 1))}, np.zeros(4), 1, Priors())
    >>> replicates = posterior_predictive(fit, 1, num_samples=3)["obs"]
    >>> replicates.shape, bool(np.all(np.abs(replicates - 5.0) < 0.01))
    ((2, 3, 4), True)
    """
    from dpgmm_ppl.mixtures import _flat_parameters
    from dpgmm_ppl.result import Fit

    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a dpgmm_ppl.Fit, got {type(fit).__name__}")
    key = check_rng_key(rng_key)
    if num_samples is None:
        num_samples = fit.num_draws
    check_positive_int("num_samples", num_samples)
    chosen = draw_indices(fit.num_draws, num_samples)
    samples = {name: np.asarray(value)[:, chosen] for name, value in fit.samples.items()}
    weights, loc, spread = _flat_parameters(samples)
    keys = jax.random.split(key, weights.shape[0])
    values = _replicates(keys, weights, loc, spread, int(fit.data.shape[0]))
    shape = (fit.num_chains, num_samples) + fit.data.shape
    return {OBSERVED_SITE: np.asarray(values, fit.data.dtype).reshape(shape)}
