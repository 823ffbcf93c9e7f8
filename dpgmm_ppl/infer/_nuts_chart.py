"""Which sticks NUTS moves in the centred chart: the scouting of ``centered_sticks="auto"``.

A spare component's stick is best non-centred (its coordinate's prior does
not depend on ``alpha``: no funnel); a stick the data pin down is best
centred (non-centred, it lies on a ridge with ``alpha`` that holds the step
size down). Which components the data occupy is known only once a chain has
found them, so the first part of the warmup runs with every stick
non-centred; then each chain's components are put in order of decreasing
weight and the leading sticks with enough data after them are centred
(:func:`centered_stick_count`). The measurements behind the fraction and
the thresholds are in ``benchmarks/README.md`` (``nuts_ess.py``).
"""

from __future__ import annotations

import numpy as np

from dpgmm_ppl.infer._nuts_program import run_sampler
from dpgmm_ppl.infer._nuts_starts import sorted_values

__all__ = ["centered_stick_count", "plan_scouting", "scout"]

#: The first 1/this of the warmup runs fully non-centred to find the occupied components.
SCOUT_FRACTION = 2

#: Points, and share of the data, that the later components must hold for a
#: stick to be centred (``centered_sticks="auto"``).
CENTERED_STICK_MIN_POINTS = 20
CENTERED_STICK_MIN_FRACTION = 0.01


def centered_stick_count(
    weights: np.ndarray,
    num_data: int,
    min_points: float = CENTERED_STICK_MIN_POINTS,
    min_fraction: float = CENTERED_STICK_MIN_FRACTION,
) -> int:
    """How many leading sticks the data pin down, from weights sorted in decreasing order.

    Stick ``k`` is counted when the components after it hold at least
    ``min_points`` of the ``num_data`` points, and at least ``min_fraction``
    of them (``num_data`` times the weight left after component ``k``): its
    fraction :math:`v_k` then has data on both sides and a posterior much
    narrower than its prior. The share guards large data sets, where a
    component holding a few dozen points early in the warmup is often one
    that empties later.

    Over several chains the count is the smallest: a stick is centred only
    where every chain has data after it. A chain that ends its scouting with
    a cluster split over a spare component would otherwise centre the
    spare's stick in all of them, and where that spare is empty its stick is
    the funnel that the non-centred chart avoids.

    Parameters
    ----------
    weights : Float[Array, "chain K"]
        Each chain's weights, sorted in decreasing order.
    num_data : int
        Number of observations.
    min_points : float
        Points the later components must hold.
    min_fraction : float
        Share of the ``num_data`` points they must hold.

    Returns
    -------
    int
        The smallest count over the chains.

    Examples
    --------
    >>> import numpy as np
    >>> centered_stick_count(np.array([[0.6, 0.3, 0.0995, 0.0004, 0.0001]]), 10_000)
    2
    """
    weights = np.asarray(weights, dtype=np.float64)
    remaining = 1.0 - np.cumsum(weights, axis=-1)[..., :-1]
    threshold = max(min_points, min_fraction * num_data)
    counts = np.sum(num_data * remaining >= threshold, axis=-1)
    return int(np.min(counts))


def plan_scouting(num_components, parameterization, centered_sticks, num_warmup):
    """``(is_scouting, scout_warmup, centered_sticks)`` for resolved options.

    Scouting happens with ``centered_sticks="auto"`` in the non-centred
    chart, over the first :data:`SCOUT_FRACTION`-th of the warmup (at least
    one iteration; none without warmup, where the starts decide). A single
    component has no stick, hence one chart and no scouting.

    Examples
    --------
    >>> plan_scouting(5, "noncentered", "auto", 500), plan_scouting(1, "noncentered", "auto", 500)
    ((True, 250, 'auto'), (False, 0, 0))
    """
    is_scouting = parameterization == "noncentered" and centered_sticks == "auto"
    if is_scouting and num_components == 1:
        return False, 0, 0
    scout_warmup = max(1, num_warmup // SCOUT_FRACTION) if is_scouting and num_warmup else 0
    return is_scouting, scout_warmup, centered_sticks


def scout(rng_key, density, starts, num_warmup, **settings):
    """Warm up in the non-centred chart; return where the chains end and the sticks to centre.

    Parameters
    ----------
    rng_key : PRNGKey
        The scouting warmup's key.
    density : LogDensity
        In the fully non-centred chart.
    starts : dict
        Unconstrained starts, a chain axis first.
    num_warmup : int
        Scouting iterations; ``0`` lets the starts decide.
    **settings
        The sampler's settings (:func:`~dpgmm_ppl.infer._nuts_program.run_sampler`).

    Returns
    -------
    (values, count)
        Each chain's last warmup point as constrained values with their log
        weights, components in order of decreasing weight, and
        :func:`centered_stick_count` of those weights.
    """
    ends = starts
    if num_warmup:
        ends, _, _, _ = run_sampler(
            rng_key, density, starts, None, num_warmup=num_warmup, num_samples=0, **settings,
        )
    values = sorted_values(density, ends)
    weights = np.exp(np.asarray(values["log_weights"], np.float64))
    return values, centered_stick_count(weights, density.num_data)
