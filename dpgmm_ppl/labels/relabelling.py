"""Relabelling: permute the components of every draw onto one labelling.

:func:`relabel` implements pivotal reordering (Marin, Mengersen & Robert
2005), equivalence-class representatives (Papastamoulis & Iliopoulos 2010) and
Stephens' (2000) KL algorithm; :func:`apply_permutations` applies any given
permutations. Costs come from the blocked kernels; only the ``K x K``
assignments run in Python (:func:`scipy.optimize.linear_sum_assignment`).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

import numpy as np

from dpgmm_ppl._validation import check_positive_int, check_rng_key
from dpgmm_ppl.covariance import COVARIANCE_STRUCTURES
from dpgmm_ppl.labels._checks import (
    _check_choice,
    _check_fit,
    _check_number,
    _check_permutations,
    _check_pivot,
)
from dpgmm_ppl.labels._kernels import (
    _block_layout,
    _flat_draws,
    _mean_responsibilities,
    _per_draw,
    _per_point,
    _prepared_points,
)
from dpgmm_ppl.mixtures import component_parameters
from dpgmm_ppl.result import Fit

if TYPE_CHECKING:
    import jax
    import numpy.typing as npt

__all__ = ["METHODS", "apply_permutations", "relabel"]

METHODS = ("pivot", "ecr", "stephens")


# --------------------------------------------------------------------------
# Permutations.


def _permutation_matrices(permutations, dtype):
    """One-hot ``G[s, j, k] = 1`` where ``permutations[s, k] == j``: ``r_s @ G_s`` relabels."""
    num_components = permutations.shape[-1]
    return np.swapaxes(np.eye(num_components, dtype=dtype)[permutations], -1, -2)


def _assignment_cost(costs, permutations):
    """``sum_j costs[s, perm[s, j], j]`` per draw."""
    chosen = np.take_along_axis(costs, permutations[:, None, :], axis=1)[:, 0]
    return chosen.sum(-1)


def _best_permutations(costs, current=None, *, scale=1.0):
    """Optimal assignment per draw: ``perm[s, j] = k`` minimising ``sum_j costs[s, k, j]``.

    ``costs[s, k, j]`` is the cost of giving component ``k`` of draw ``s`` the
    reference label ``j``. A draw keeps its ``current`` permutation unless the
    optimum is better by more than float noise (``1e-5`` relative, plus
    ``1e-6 * scale``): components that hold no point cost the same under any
    label, and would otherwise trade labels on rounding alone. scipy has no
    batched solver; ``K x K`` problems take microseconds each.
    """
    from scipy.optimize import linear_sum_assignment

    costs = np.asarray(costs, np.float64)
    permutations = np.empty(costs.shape[:-1], np.int64)
    for index, cost in enumerate(costs):
        rows, cols = linear_sum_assignment(cost)
        permutations[index, cols] = rows
    if current is None:
        return permutations
    best = _assignment_cost(costs, permutations)
    kept = _assignment_cost(costs, current)
    is_kept = kept <= best + 1e-5 * (np.abs(best) + np.abs(kept)) + 1e-6 * scale
    return np.where(is_kept[:, None], current, permutations)


def _compose(first, second):
    """The permutation applying ``first`` then ``second``: ``first[..., second]``."""
    return np.take_along_axis(first, second, axis=-1)


def apply_permutations(fit: Fit, permutations: npt.ArrayLike) -> Fit:
    """Permute the components of every draw: ``new[k] = old[permutations[c, s, k]]``.

    Parameters
    ----------
    fit : Fit
    permutations : Int[Array, "chain draw num_components"]
        One permutation of ``range(num_components)`` per draw.

    Returns
    -------
    Fit
        ``weights``, ``loc`` and ``scale`` permuted, ``permutations`` composed
        with any the fit already had; label-invariant fields are shared.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> fit = Fit("nuts", {"alpha": np.ones((1, 1)), "weights": np.array([[[0.2, 0.8]]]),
    ...                    "loc": np.array([[[-1.0, 1.0]]]), "scale": np.ones((1, 1, 2))},
    ...           {"lp": np.zeros((1, 1))}, np.zeros(3), 2, Priors())
    >>> swapped = apply_permutations(fit, np.array([[[1, 0]]]))
    >>> swapped.samples["loc"].tolist(), swapped.permutations.tolist()
    ([[[1.0, -1.0]]], [[[1, 0]]])
    """
    _check_fit(fit)
    permutations = _check_permutations(permutations, fit)
    samples = dict(fit.samples)
    shared = _shared_sites(fit)
    for name, value in fit.samples.items():
        value = np.asarray(value)
        if value.ndim < 3 or name in shared:  # alpha, a covariance shared by all
            continue
        index = permutations.reshape(permutations.shape + (1,) * (value.ndim - 3))
        samples[name] = np.take_along_axis(value, index, axis=2)
    total = permutations if fit.permutations is None else _compose(fit.permutations, permutations)
    return dataclasses.replace(fit, samples=samples, permutations=total)


def _shared_sites(fit):
    """Sites of ``fit``'s covariance structure without a component axis (none
    for the built-in structures), which a permutation of the components leaves."""
    structure = COVARIANCE_STRUCTURES.get(fit.covariance)
    if structure is None:
        return frozenset()
    event_dims = ("dim",) if fit.dim is not None else ()
    return frozenset(structure.site_dims(event_dims)) - set(structure.component_sites(event_dims))


# --------------------------------------------------------------------------
# Relabelling.


def _best_draw(fit):
    """``(chain, draw)`` with the best objective: MAP's best restart
    (:attr:`Fit.best_chain <dpgmm_ppl.Fit.best_chain>`), else the highest ``lp``."""
    if fit.is_point_estimate:
        return fit.best_chain, 0
    score = np.asarray(fit.sample_stats["lp"], np.float64)
    score = np.where(np.isnan(score), -np.inf, score)
    return tuple(int(i) for i in np.unravel_index(np.argmax(score), score.shape))


def _pivot_draw(fit, pivot):
    """``(weights, loc, scale)`` of the pivot: the best draw (:func:`_best_draw`), a
    (chain, draw) pair, or the best draw of another fit (a MAP fit, say)."""
    source = fit
    if isinstance(pivot, Fit):
        source = pivot
        chain, draw = _best_draw(pivot)
    elif pivot is None:
        chain, draw = _best_draw(fit)
    else:
        chain, draw = pivot
    return component_parameters(
        {name: np.asarray(value)[chain, draw] for name, value in source.samples.items()}
    )


#: Classification probabilities below this count as zero in the pivot's and
#: Stephens' costs. Without a floor, a label the reference does not use (all its
#: probabilities at float32's ``tiny``) costs a bounded ``-log(tiny)`` per
#: point, less than a label used far away, so the optimal assignment would
#: rather put a light component on an empty label than a heavy one on the
#: empty label and the light one on a distant used label. Measured on 8 MAP
#: restarts of the seed data (50 components): without it, one restart that
#: splits the component at 8 into two had its 8.17 part labelled as the
#: pivot's component at 3. With it, a point counts as "not in" a reference
#: component once that component's probability is below 1e-3 (about 3.7
#: standard deviations away), whatever else holds it.
PROBABILITY_FLOOR = 1e-3


def _pivot_permutations(blocks, reference, *, is_allocation, rng_key=None):
    """Match every draw to reference classification probabilities ``(n, K)``."""
    if is_allocation:
        target = -np.eye(reference.shape[1], dtype=reference.dtype)[np.argmax(reference, axis=1)]
    else:
        target = -np.log(np.maximum(reference, PROBABILITY_FLOOR))
    identity = np.broadcast_to(np.arange(reference.shape[1]), (blocks.num_draws, reference.shape[1]))
    costs = _per_draw(blocks, target, rng_key)
    return _best_permutations(costs, identity, scale=blocks.num_points)


def _stephens_permutations(blocks, start, *, max_iter, tol, dtype):
    """Stephens' KL iterations from ``start``; returns permutations and whether they settled.

    Settled: no permutation changed, or the step lowered the KL objective by
    less than ``tol`` nats per point and draw (what still trades labels then
    are components that hold a handful of points, whose parameters are noise).
    """
    permutations = start
    for _ in range(max_iter):
        mean = _per_point(blocks, _permutation_matrices(permutations, dtype)) / blocks.num_draws
        costs = _per_draw(blocks, -np.log(np.maximum(mean, PROBABILITY_FLOOR))).astype(np.float64)
        updated = _best_permutations(costs, permutations, scale=blocks.num_points)
        gain = np.sum(_assignment_cost(costs, permutations) - _assignment_cost(costs, updated))
        is_settled = gain <= tol * blocks.num_draws * blocks.num_points
        if np.array_equal(updated, permutations) or is_settled:
            return updated, True
        permutations = updated
    return permutations, False


def relabel(
    fit: Fit,
    *,
    method: str = "pivot",
    x: npt.ArrayLike | None = None,
    pivot: Fit | tuple[int, int] | None = None,
    rng_key: jax.Array | int = 0,
    max_iter: int = 20,
    tol: float = 1e-4,
) -> Fit:
    r"""Permute the components of every draw onto one common labelling.

    With :math:`r_{snk} = p(z_n = k \mid x_n, \theta_s)` the responsibilities
    of draw :math:`s`, each method builds a cost :math:`c_{skj}` of giving
    component :math:`k` of draw :math:`s` the reference label :math:`j`, and
    solves the assignment :math:`\min_\pi \sum_j c_{s\pi(j)j}` per draw.

    ``"pivot"``
        Pivotal reordering (Marin, Mengersen & Robert 2005). The pivot is the
        highest-``lp`` draw, for MAP the restart with the highest
        ``log_joint`` (or ``pivot``). Instead of a distance between
        parameters, which depends on their scales, the cost is the cross-entropy
        of the pivot's classification probabilities :math:`r^\ast` under the
        draw's: :math:`c_{skj} = -\sum_n r_{snk} \log r^\ast_{nj}`: one step of
        Stephens' algorithm with the pivot in place of the mean. Here and in
        ``"stephens"`` the reference probabilities are floored at
        :data:`PROBABILITY_FLOOR` (see there why).
    ``"ecr"``
        Equivalence-class representatives (Papastamoulis & Iliopoulos 2010).
        Allocations :math:`z_{sn}` are drawn from :math:`r_{sn\cdot}` (with
        ``rng_key``); the pivot allocation :math:`z^\ast_n` is the most probable
        component of each point under the pivot draw;
        :math:`c_{skj} = -\#\{n : z_{sn} = k, z^\ast_n = j\}`.
    ``"stephens"``
        Stephens' (2000) KL algorithm, started from the pivot solution:
        :math:`Q_{nj} = \frac1S \sum_s r_{sn\pi_s(j)}`, then
        :math:`c_{skj} = \sum_n r_{snk} \log (r_{snk} / Q_{nj})`; repeated until
        no permutation changes or a step gains less than ``tol`` (at most
        ``max_iter`` times). Two passes over draws and points per step.

    A draw keeps its labels (the pivot's start, or Stephens' previous step)
    unless another assignment is better by more than rounding: components
    holding no point cost the same under any label.

    Parameters
    ----------
    fit : Fit
    method : {"pivot", "ecr", "stephens"}
    x : Float[Array, "n"] or Float[Array, "n D"], optional
        Points the responsibilities are computed at; the training data by default.
    pivot : tuple of (int, int) or Fit, optional
        The pivot draw as ``(chain, draw)``, or a fit (a MAP fit, say) whose
        best draw is the pivot. Default: the draw with the highest ``lp``.
    rng_key : int or jax key
        Key for the allocations of ``"ecr"``; results are fixed given the key.
    max_iter : int
        Cap on the iterations of ``"stephens"``.
    tol : float
        ``"stephens"`` stops when a step lowers its objective by less than
        this many nats per point and draw.

    Returns
    -------
    Fit
        ``weights``, ``loc`` and ``scale`` permuted per draw, and
        ``permutations`` with ``new[k] = old[permutations[c, s, k]]``,
        composed with the fit's own if it was relabelled before.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> loc = np.array([[[-4.0, 4.0]], [[4.0, -4.0]]])  # chain 1 has the labels swapped
    >>> samples = {"alpha": np.ones((2, 1)), "weights": np.full((2, 1, 2), 0.5),
    ...            "loc": loc, "scale": np.ones((2, 1, 2))}
    >>> data = np.array([-4.5, -4.0, -3.5, 3.5, 4.0, 4.5])
    >>> fit = Fit("map", samples, {"lp": np.array([[0.0], [-1.0]])}, data, 2, Priors())
    >>> relabel(fit).samples["loc"][:, 0].tolist()
    [[-4.0, 4.0], [-4.0, 4.0]]
    """
    _check_fit(fit)
    _check_choice("method", method, METHODS)
    x, dtype = _prepared_points(fit, x)
    pivot = _check_pivot(pivot, fit)
    key = check_rng_key(rng_key)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = _check_number("tol", tol, "a number >= 0", lambda value: value >= 0)
    blocks = _block_layout(*_flat_draws(fit, dtype), x)
    weights, loc, spread = (value[None].astype(dtype) for value in _pivot_draw(fit, pivot))
    reference = _mean_responsibilities(
        _block_layout(weights, loc, spread, x), fit.num_components, dtype,
    ).astype(dtype)
    if method == "ecr":
        permutations = _pivot_permutations(blocks, reference, is_allocation=True, rng_key=key)
    else:
        permutations = _pivot_permutations(blocks, reference, is_allocation=False)
    if method == "stephens":
        permutations, is_settled = _stephens_permutations(
            blocks, permutations, max_iter=max_iter, tol=tol, dtype=dtype
        )
        if not is_settled:
            from numpyro.util import find_stack_level

            warnings.warn(
                f"relabel: Stephens' algorithm still gained more than tol={tol} after "
                f"max_iter={max_iter} iterations; the result is its last iterate",
                RuntimeWarning,
                stacklevel=find_stack_level(),
            )
    lead = (fit.num_chains, fit.num_draws)
    return apply_permutations(fit, permutations.reshape(lead + (fit.num_components,)))
