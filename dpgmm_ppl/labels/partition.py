"""Label-invariant clustering of the points: co-clustering and a point partition.

:func:`coclustering_matrix` is the posterior probability that two points share
a component; :func:`point_partition` minimises a posterior expected loss over
partitions given that matrix, by a SALSO-like greedy search (Dahl, Johnson &
Müller 2022). Neither looks at component labels, so neither needs relabelling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import numpy as np

from dpgmm_ppl._display import text_table
from dpgmm_ppl._validation import check_positive_int, check_rng_key
from dpgmm_ppl.labels._checks import _check_choice, _check_fit, _check_max_points
from dpgmm_ppl.labels._kernels import (
    _block_layout,
    _coclustering_sum,
    _flat_draws,
    _mean_responsibilities,
    _per_draw,
    _per_point,
    _prepared_points,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from dpgmm_ppl.result import Fit

__all__ = ["LOSSES", "Coclustering", "Partition", "coclustering_matrix", "point_partition"]

LOSSES = ("vi", "binder")


class Coclustering(NamedTuple):
    """A posterior similarity matrix and the rows of ``x`` it covers.

    ``repr`` is a short summary; :func:`dpgmm_ppl.plots.plot_coclustering`
    draws it.
    """

    matrix: np.ndarray  # (m, m)
    indices: np.ndarray  # (m,)

    def __repr__(self) -> str:
        matrix = np.asarray(self.matrix, np.float64)
        size = matrix.shape[0]
        off_diagonal = matrix[~np.eye(size, dtype=bool)]
        summary = "no pairs" if off_diagonal.size == 0 else (
            f"mean {off_diagonal.mean():.3f}; {np.mean(off_diagonal > 0.5):.0%} of pairs above 0.5")
        indices = np.asarray(self.indices)
        covered = "none" if indices.size == 0 else (
            f"{indices.size} rows of the data, {indices.min()} to {indices.max()}")
        rows = [("matrix", f"{matrix.shape}; off the diagonal {summary}"), ("indices", covered)]
        return "\n".join([f"Coclustering({size} points)", *text_table(rows)])


def _subsample(num_points, max_points, key):
    """Sorted indices of at most ``max_points`` points, drawn without replacement."""
    if max_points is None or num_points <= max_points:
        return np.arange(num_points)
    chosen = jax.random.choice(key, num_points, (max_points,), replace=False)
    return np.sort(np.asarray(chosen))


def coclustering_matrix(
    fit: Fit,
    x: npt.ArrayLike | None = None,
    *,
    max_points: int | None = None,
    rng_key: jax.Array | int = 0,
) -> Coclustering:
    r"""Posterior probability that two points share a component.

    The Rao-Blackwellised form: given a draw's parameters the allocations are
    independent, so points :math:`i \ne j` share a component with probability
    :math:`\sum_k r_{sik} r_{sjk}`, averaged over draws instead of over sampled
    allocations:

    .. math:: P_{ij} = \frac1S \sum_s \sum_k r_{sik}\, r_{sjk}.

    Off the diagonal this is the posterior co-clustering probability, with no
    Monte-Carlo noise from allocations. The diagonal keeps the same formula,
    :math:`\frac1S \sum_s \sum_k r_{sik}^2` (the chance that two independent
    allocations of point :math:`i` agree), not 1. Label-invariant: no
    relabelling needed. Costs :math:`m^2 S K` flops and :math:`m^2` memory.

    Parameters
    ----------
    fit : Fit
    x : Float[Array, "n"] or Float[Array, "n D"], optional
        Points; the training data by default.
    max_points : int, optional
        Use a random subset of this many points (all by default).
    rng_key : int or jax key
        Key for the subset.

    Returns
    -------
    Coclustering
        ``matrix`` of shape ``(m, m)``, symmetric, and ``indices`` (``(m,)``)
        of the rows of ``x`` it covers.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.full((1, 1, 2), 0.5),
    ...            "loc": np.array([[[-5.0, 5.0]]]), "scale": np.ones((1, 1, 2))}
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, np.array([-5.0, -4.0, 5.0]), 2, Priors())
    >>> coclustering_matrix(fit).matrix.round(3).tolist()
    [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    _check_fit(fit)
    x, dtype = _prepared_points(fit, x)
    max_points = _check_max_points(max_points)
    indices = _subsample(x.shape[0], max_points, check_rng_key(rng_key))
    points = x[indices]
    blocks = _block_layout(*_flat_draws(fit, dtype), points, chunk=points.shape[0])
    total = np.asarray(_coclustering_sum(blocks.params, blocks.draw_mask, blocks.x_chunks[0]))
    matrix = (total + total.T) / (2.0 * blocks.num_draws)
    return Coclustering(matrix=matrix, indices=indices)


class Partition(NamedTuple):
    """A point estimate of the clustering of the data; ``repr`` is a short summary."""

    labels: np.ndarray  # (n,) int, 0 the largest cluster
    expected_loss: float  # of the optimised points' partition
    loss: str
    indices: np.ndarray  # points whose partition was optimised; the rest were placed after

    def __repr__(self) -> str:
        labels = np.asarray(self.labels)
        sizes = np.bincount(labels) if labels.size else np.zeros(0, int)
        shown = ", ".join(str(size) for size in sizes[:8]) + (", ..." if sizes.size > 8 else "")
        optimised = np.size(self.indices)
        rows = [
            ("clusters", f"{sizes.size}, of sizes {shown}" if sizes.size else "0"),
            ("labels", f"{labels.size} points, 0 the largest cluster"),
            ("indices", f"{optimised} points searched"
             + ("" if optimised == labels.size else ", the others placed after")),
        ]
        header = f"Partition(loss={self.loss!r}, expected_loss={float(self.expected_loss):.4g})"
        return "\n".join([header, *text_table(rows)])


def _xlogx(values):
    return values * np.log(np.maximum(values, 1))


def _insertion_costs(similarity_row, labels, counts, within, loss):
    """Change in expected loss from adding an unallocated point to each cluster slot.

    Empty slots (a new cluster) cost 0. For Binder's loss the change is
    :math:`\\sum_{j \\in c} (1 - 2P_{ij})`; for the VI lower bound it also
    counts the members' own terms :math:`-2 \\log \\sum_{l \\in c} P_{jl}`.
    """
    member = labels >= 0
    own = labels[member]
    sums = np.bincount(own, weights=similarity_row[member], minlength=counts.size)
    if loss == "binder":
        return counts - 2.0 * sums, sums
    spread = np.bincount(
        own, weights=np.log1p(similarity_row[member] / within[member]), minlength=counts.size
    )
    costs = _xlogx(counts + 1.0) - _xlogx(counts) - 2.0 * np.log1p(sums) - 2.0 * spread
    return costs, sums


def _place(point, similarity, labels, counts, within, loss, *, stay=None):
    """Put an unallocated point in its cheapest cluster (``stay`` wins ties)."""
    costs, sums = _insertion_costs(similarity[point], labels, counts, within, loss)
    best = int(np.argmin(costs))
    if stay is not None and costs[stay] <= costs[best]:
        best = stay
    members = labels == best
    within[members] += similarity[point, members]
    within[point] = 1.0 + sums[best]
    labels[point] = best
    counts[best] += 1
    return best


def _remove(point, similarity, labels, counts, within):
    cluster = labels[point]
    labels[point] = -1
    counts[cluster] -= 1
    members = labels == cluster
    within[members] -= similarity[point, members]
    return cluster


def _local_search(similarity, labels, loss, *, max_iter, rng):
    """Sweeps moving single points to their best cluster, until none moves."""
    size = labels.size
    labels = labels.copy()
    counts = np.bincount(labels[labels >= 0], minlength=size).astype(float)
    within = np.where(labels >= 0, np.sum(similarity * (labels[:, None] == labels[None]), 1), 0.0)
    for _ in range(max_iter):
        moved = 0
        for point in rng.permutation(size):
            was = _remove(point, similarity, labels, counts, within) if labels[point] >= 0 else None
            moved += _place(point, similarity, labels, counts, within, loss, stay=was) != was
        if not moved:
            break
    return labels


def _expected_loss(similarity, labels, loss):
    """Binder's expected loss (pairs) or the VI lower bound (bits per point)."""
    same = labels[:, None] == labels[None, :]
    if loss == "binder":
        return float(np.sum(np.triu(np.where(same, 1.0 - similarity, similarity), k=1)))
    sizes = np.bincount(labels)[labels]
    within = np.sum(similarity * same, axis=1)
    return float(np.mean(np.log2(sizes) - 2 * np.log2(within) + np.log2(similarity.sum(1))))


def _canonical(labels):
    """Labels renumbered 0..C-1 by decreasing size, ties by first appearance."""
    _, first, inverse, sizes = np.unique(labels, return_index=True, return_inverse=True,
                                         return_counts=True)
    order = np.lexsort((first, -sizes))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse.reshape(-1)]


def _place_remaining(fit, x, dtype, indices, labels):
    """Labels for the points left out: the cluster with the highest mean co-clustering."""
    rest = np.setdiff1d(np.arange(x.shape[0]), indices)
    draws = _flat_draws(fit, dtype)
    members = np.eye(labels.max() + 1, dtype=dtype)[labels]
    profiles = _per_draw(_block_layout(*draws, x[indices]), members)  # (S, K, C)
    mixers = profiles / (profiles.shape[0] * members.sum(0))
    affinity = _per_point(_block_layout(*draws, x[rest]), mixers.astype(dtype))
    full = np.empty(x.shape[0], np.int64)
    full[indices] = labels
    full[rest] = np.argmax(affinity, axis=1)
    return full


def point_partition(
    fit: Fit,
    x: npt.ArrayLike | None = None,
    *,
    loss: str = "vi",
    max_points: int | None = 2000,
    num_initial: int = 4,
    max_iter: int = 50,
    rng_key: jax.Array | int = 0,
) -> Partition:
    r"""The partition minimising a posterior expected loss, found by greedy search.

    ``"binder"`` is Binder's loss with equal costs, whose expectation is exact
    given the co-clustering matrix :math:`P` (:func:`coclustering_matrix`,
    with :math:`P_{ii} = 1`):
    :math:`\sum_{i<j} [c_i = c_j](1 - P_{ij}) + [c_i \ne c_j] P_{ij}`.
    ``"vi"`` is the lower bound of Wade & Ghahramani (2018) on the expected
    variation of information,
    :math:`\frac1n \sum_i \log_2 |c(i)| - 2 \log_2 \sum_{j \in c(i)} P_{ij}
    + \log_2 \sum_j P_{ij}`.

    The search follows SALSO (Dahl, Johnson & Müller 2022): from the most
    probable component under the mean responsibilities and from
    ``num_initial - 1`` sequential allocations in random order, sweeps move
    one point at a time to the cluster (or new cluster) that lowers the loss
    most, until a sweep moves nothing; the best end point wins.

    Parameters
    ----------
    fit : Fit
    x : Float[Array, "n"] or Float[Array, "n D"], optional
        Points; the training data by default.
    loss : {"vi", "binder"}
    max_points : int or None
        Optimise the partition of a random subset of this many points (the
        search costs :math:`m^2` per sweep); every other point then joins the
        cluster it has the highest mean co-clustering probability with. None:
        all points.
    num_initial : int
        Starting partitions.
    max_iter : int
        Cap on the sweeps from each start.
    rng_key : int or jax key
        Key for the subset, the allocation orders and the sweep orders.

    Returns
    -------
    Partition
        ``labels`` ``(n,)`` numbered 0..C-1 by decreasing cluster size,
        ``expected_loss`` of the optimised subset's partition, and the
        ``indices`` of that subset.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 2)), "weights": np.full((1, 2, 2), 0.5),
    ...            "loc": np.array([[[-5.0, 5.0], [5.0, -5.0]]]), "scale": np.ones((1, 2, 2))}
    >>> fit = Fit("nuts", samples, {"lp": np.zeros((1, 2))},
    ...           np.array([4.0, -5.0, 5.0, -4.0, 6.0]), 2, Priors())
    >>> point_partition(fit).labels.tolist()
    [0, 1, 0, 1, 0]
    >>> point_partition(fit)  # doctest: +ELLIPSIS
    Partition(loss='vi', expected_loss=...)
      clusters  2, of sizes 3, 2
      labels    5 points, 0 the largest cluster
      indices   5 points searched
    """
    _check_fit(fit)
    _check_choice("loss", loss, LOSSES)
    x, dtype = _prepared_points(fit, x)
    max_points = _check_max_points(max_points)
    num_initial = check_positive_int("num_initial", num_initial)
    max_iter = check_positive_int("max_iter", max_iter)
    key = check_rng_key(rng_key)
    similarity, indices = coclustering_matrix(fit, x, max_points=max_points, rng_key=key)
    similarity = np.asarray(similarity, np.float64)
    np.fill_diagonal(similarity, 1.0)
    rng = np.random.default_rng(np.asarray(key))
    mean = _mean_responsibilities(
        _block_layout(*_flat_draws(fit, dtype), x[indices]), fit.num_components, dtype
    )
    # The most probable component under the mean responsibilities, then empty
    # partitions that the first sweep fills by sequential allocation.
    starts = [np.unique(np.argmax(mean, axis=1), return_inverse=True)[1].reshape(-1)]
    starts += [np.full(indices.size, -1) for _ in range(num_initial - 1)]
    candidates = [_local_search(similarity, start, loss, max_iter=max_iter, rng=rng)
                  for start in starts]
    values = [_expected_loss(similarity, labels, loss) for labels in candidates]
    best = _canonical(candidates[int(np.argmin(values))])
    if indices.size < x.shape[0]:
        best = _canonical(_place_remaining(fit, x, dtype, indices, best))
    return Partition(labels=best, expected_loss=min(values), loss=loss, indices=indices)
