"""The posterior of the number of clusters: occupied, and above a weight."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dpgmm_ppl._display import html_table, text_table
from dpgmm_ppl._validation import check_rng_key
from dpgmm_ppl.labels._checks import _check_fit, _check_number
from dpgmm_ppl.labels._kernels import _block_layout, _flat_draws, _per_draw, _prepared_points

if TYPE_CHECKING:
    import jax
    import numpy.typing as npt

    from dpgmm_ppl.result import Fit

__all__ = ["NumClustersPosterior", "num_clusters_posterior"]

#: Numbers of clusters a summary lists at most (those with a probability above 0).
MAX_ROWS = 12


class NumClustersPosterior(NamedTuple):
    """Two posteriors of the number of clusters, over ``values`` = 0..K.

    ``occupied``: components holding at least one point in allocations drawn
    from each draw's responsibilities (the number of clusters in the data).
    ``above_threshold``: components whose weight exceeds ``threshold`` (the
    number of clusters in the population the model describes, which counts
    components no point belongs to and misses small occupied ones).
    """

    values: np.ndarray  # (K + 1,)
    occupied: np.ndarray  # (chain, draw)
    above_threshold: np.ndarray  # (chain, draw)
    occupied_probabilities: np.ndarray  # (K + 1,)
    above_threshold_probabilities: np.ndarray  # (K + 1,)
    threshold: float

    def _table(self):
        """Header and rows: each number of clusters with a probability above 0, and the means."""
        values = np.asarray(self.values)
        occupied = np.asarray(self.occupied_probabilities)
        above = np.asarray(self.above_threshold_probabilities)
        shown = values[(occupied > 0) | (above > 0)][:MAX_ROWS]
        header = ("clusters", "P(occupied)", f"P(weight > {self.threshold:g})")
        rows = [(str(value), f"{occupied[value]:.3f}", f"{above[value]:.3f}") for value in shown]
        rows.append(("mean", f"{np.sum(values * occupied):.2f}", f"{np.sum(values * above):.2f}"))
        return header, rows

    def __repr__(self) -> str:
        num_chains, num_draws = np.shape(self.occupied)
        header, rows = self._table()
        return "\n".join([
            f"NumClustersPosterior(threshold={self.threshold:g}, "
            f"{num_chains} chains x {num_draws} draws)",
            *text_table(rows, header=header),
            "  per draw: .occupied, .above_threshold",
        ])

    def _repr_html_(self):
        header, rows = self._table()
        return html_table(rows, header=header, caption="posterior of the number of clusters")


def num_clusters_posterior(
    fit: Fit,
    x: npt.ArrayLike | None = None,
    *,
    threshold: float = 0.01,
    rng_key: jax.Array | int = 0,
) -> NumClustersPosterior:
    """Posterior of the number of occupied clusters and of components above a weight.

    Occupied clusters count the distinct components among allocations
    :math:`z_n \\sim r_{sn\\cdot}` drawn once per draw; components above the
    threshold count :math:`w_{sk} > \\text{threshold}`, as
    :meth:`Fit.num_components_used`. The first depends on the data, the second
    only on the weights: a component with weight 0.02 may hold no point of a
    small data set, and 30 points in a component of weight 0.005 fall below
    the threshold. Both are label-invariant.

    Parameters
    ----------
    fit : Fit
    x : Float[Array, "n"] or Float[Array, "n D"], optional
        Points to allocate; the training data by default.
    threshold : float
        Weight in [0, 1) above which a component counts.
    rng_key : int or jax key
        Key for the allocations.

    Returns
    -------
    NumClustersPosterior
        Per draw counts and their distributions over 0..K.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.array([[[0.6, 0.395, 0.005]]]),
    ...            "loc": np.array([[[-5.0, 5.0, 50.0]]]), "scale": np.ones((1, 1, 3))}
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, np.array([-5.0, 5.0]), 3, Priors())
    >>> result = num_clusters_posterior(fit)
    >>> result.occupied_probabilities.tolist(), result.above_threshold_probabilities.tolist()
    ([0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0])
    >>> result
    NumClustersPosterior(threshold=0.01, 1 chains x 1 draws)
      clusters  P(occupied)  P(weight > 0.01)
      2         1.000        1.000
      mean      2.00         2.00
      per draw: .occupied, .above_threshold
    """
    _check_fit(fit)
    x, dtype = _prepared_points(fit, x)
    threshold = _check_number("threshold", threshold, "a number in [0, 1)",
                              lambda value: 0 <= value < 1)
    key = check_rng_key(rng_key)
    blocks = _block_layout(*_flat_draws(fit, dtype), x)
    counts = _per_draw(blocks, np.ones((x.shape[0], 1), dtype), key)[..., 0]
    lead = (fit.num_chains, fit.num_draws)
    occupied = np.sum(counts > 0.5, axis=-1).reshape(lead)
    above = np.asarray(fit.num_components_used(threshold))
    size = fit.num_components + 1
    return NumClustersPosterior(
        values=np.arange(size),
        occupied=occupied,
        above_threshold=above,
        occupied_probabilities=np.bincount(occupied.ravel(), minlength=size) / occupied.size,
        above_threshold_probabilities=np.bincount(above.ravel(), minlength=size) / above.size,
        threshold=float(threshold),
    )
