"""The package's NUTS trajectory: multinomial trees whose leapfrog steps halve where needed.

A trajectory of NUTS is a binary tree of leapfrog steps of one size ``h``,
doubled to the left or right in time until it makes a U-turn. On the seed
data the size the warmup adapts is several times too long where a spare
component passes the neck between empty and pinned, and those trajectories
diverge (``docs/backends.md``). Here each step of the tree may be taken as
``2**k`` leapfrog steps of ``h / 2**k`` (after WALNUTS: Bou-Rabee,
Carpenter, Kleppe and Liu, 2025):

* ``k`` is the smallest of ``0 .. MAX_HALVINGS`` for which the Hamiltonian
  varies by at most ``energy_tolerance`` over the ``2**k + 1`` points of the
  step (``MAX_HALVINGS`` when none does);
* the step is kept only if the same rule, run from its end backwards in
  time, picks the same ``k``. Otherwise it is *irreversible*: the subtree
  being built is dropped, as at a divergence, and the draw is counted in
  the ``irreversible`` statistic rather than in ``diverging``.

Both rules depend on the two ends of the step only, so every point of the
kept tree would have built the same tree, and the chain keeps its target
(``tests/test_nuts_tree.py`` checks the moments of a quartic target to a few
standard errors over 4,000 chains). A step that needs no halving costs one
gradient, as a plain leapfrog step does: each point carries its potential
and gradient.

Within a subtree the leaves are drawn by progressive multinomial sampling;
a finished subtree replaces the tree's proposal with probability
``min(1, W_new / W_old)`` (biased progressive sampling), and is refused when
it turned, diverged or met an irreversible step. U-turns are checked, with
the momenta summed over the span and the velocities ``M^-1 p`` at its ends,
for the whole tree after each doubling and, as the subtree grows, for every
aligned span of ``2, 4, ...`` of its leaves, from checkpoints kept per level.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["MAX_DELTA_ENERGY", "MAX_HALVINGS", "Point", "TreeResult", "build_tree",
           "kinetic_energy", "make_step"]

#: A leaf whose Hamiltonian exceeds the start's by more than this diverges (NumPyro's value).
MAX_DELTA_ENERGY = 1000.0
#: At most ``2**MAX_HALVINGS`` leapfrog steps stand in for one step of the tree.
MAX_HALVINGS = 5

Array = Any


class Point(NamedTuple):
    """A point of phase space, flat, with its potential and the potential's gradient."""

    position: Array
    momentum: Array
    potential: Array
    gradient: Array


class TreeResult(NamedTuple):
    """What one trajectory gives the chain."""

    proposal: Point
    energy: Array
    accept_prob: Array
    num_leaves: Array
    num_leapfrog: Array
    depth: Array
    diverging: Array
    irreversible: Array


class _Subtree(NamedTuple):
    end: Point
    proposal: Point
    proposal_energy: Array
    log_weight: Array
    momentum_sum: Array
    num_leaves: Array
    sum_accept: Array
    num_leapfrog: Array
    turning: Array
    diverging: Array
    irreversible: Array


def _velocity(inverse_mass, momentum):
    """``M^-1 p`` for one momentum or a stack of them (rows)."""
    if inverse_mass.ndim == 1:
        return inverse_mass * momentum
    return momentum @ inverse_mass  # symmetric, so rows times it are M^-1 p


def kinetic_energy(inverse_mass, momentum):
    """``p . M^-1 p / 2``."""
    return 0.5 * jnp.dot(momentum, _velocity(inverse_mass, momentum))


def _hamiltonian(inverse_mass, point):
    energy = point.potential + kinetic_energy(inverse_mass, point.momentum)
    return jnp.where(jnp.isnan(energy), jnp.inf, energy)


def _select(condition, if_true, if_false):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), if_true, if_false)


def _leapfrog(potential_and_gradient, inverse_mass, point, step):
    half_kicked = point.momentum - 0.5 * step * point.gradient
    position = point.position + step * _velocity(inverse_mass, half_kicked)
    potential, gradient = potential_and_gradient(position)
    return Point(position, half_kicked - 0.5 * step * gradient, potential, gradient)


def make_step(potential_and_gradient: Callable, inverse_mass: Array,
              energy_tolerance: float | None, *, check_reverse: bool = True) -> Callable:
    """``step(point, h) -> (end, end energy, irreversible, leapfrog steps)``.

    ``energy_tolerance=None`` gives the plain leapfrog step of NUTS (never
    irreversible); otherwise the step halves as the module describes.
    ``check_reverse=False`` drops the reversibility test, which biases the
    chain: it is there for the test that shows this.
    """
    def leapfrog(point, step):
        return _leapfrog(potential_and_gradient, inverse_mass, point, step)

    if energy_tolerance is None:
        def plain(point, step):
            end = leapfrog(point, step)
            return end, _hamiltonian(inverse_mass, end), jnp.array(False), jnp.int32(1)
        return plain

    def fine_steps(point, energy, step, halvings):
        """``2**halvings`` steps of ``step / 2**halvings``: the end, its energy, whether
        the Hamiltonian stayed within the tolerance, and the count."""
        count = jnp.left_shift(jnp.int32(1), halvings)

        def one(_, carry):
            point, _, high, low = carry
            point = leapfrog(point, step / count)
            energy = _hamiltonian(inverse_mass, point)
            return point, energy, jnp.maximum(high, energy), jnp.minimum(low, energy)

        end, end_energy, high, low = jax.lax.fori_loop(
            0, count, one, (point, energy, energy, energy))
        return end, end_energy, high - low <= energy_tolerance, count

    def adaptive(point, step):
        # One loop, so that the leapfrog step is traced once: first forward
        # with k = 0, 1, .. until a k passes (or k = MAX_HALVINGS), then back
        # from the end with k = 0 .. chosen - 1, where a pass is irreversible.
        # The rule sees the step's own points only: its start, not the tree's.
        energy = _hamiltonian(inverse_mass, point)

        def attempt(carry):
            backward, halvings, end, end_energy, chosen, _, _, used = carry
            reached, reached_energy, within, count = fine_steps(
                _select(backward, end, point), jnp.where(backward, end_energy, energy),
                jnp.where(backward, -step, step), halvings)
            settles = ~backward & (within | (halvings >= MAX_HALVINGS))
            irreversible = backward & within
            chosen = jnp.where(settles, halvings, chosen)
            halvings = jnp.where(settles, 0, halvings + 1)
            backward = backward | settles
            done = irreversible | (backward & (halvings >= chosen))
            if not check_reverse:
                done = done | settles
            return (backward, halvings, _select(settles, reached, end),
                    jnp.where(settles, reached_energy, end_energy), chosen, irreversible, done,
                    used + count)

        start = (jnp.array(False), jnp.int32(0), point, energy, jnp.int32(0), jnp.array(False),
                 jnp.array(False), jnp.int32(0))
        _, _, end, end_energy, _, irreversible, _, used = jax.lax.while_loop(
            lambda carry: ~carry[6], attempt, start)
        # A step that ends at an infinite energy is a divergence, not counted twice.
        return end, end_energy, irreversible & jnp.isfinite(end_energy), used

    return adaptive


def _is_turning(inverse_mass, momentum_left, momentum_right, momentum_sum):
    forward = jnp.dot(_velocity(inverse_mass, momentum_left), momentum_sum)
    backward = jnp.dot(_velocity(inverse_mass, momentum_right), momentum_sum)
    return (forward <= 0) | (backward <= 0)


def _subtree(take_step, inverse_mass, start, depth, step, energy_start, rng_key, num_levels):
    """``2**depth`` leaves on from ``start`` (fewer if one turns, diverges or is irreversible).

    Checkpoints: the leaf ``n`` (counted from 0 in the subtree) opens the
    aligned spans that start at it when ``n`` is even, and is stored at
    level ``popcount(n)``, with the momentum sum before it; an odd ``n``
    closes the spans of ``2, 4, .., 2**t`` leaves that end at it (``t`` its
    trailing ones), whose starts sit at levels ``popcount(n) - t`` to
    ``popcount(n) - 1``.
    """
    dim = start.position.shape[0]
    levels = jnp.arange(num_levels)
    zero = jnp.zeros((), start.potential.dtype)
    initial = _Subtree(
        end=start, proposal=start, proposal_energy=energy_start, log_weight=-jnp.inf + zero,
        momentum_sum=jnp.zeros_like(start.momentum), num_leaves=jnp.int32(0), sum_accept=zero,
        num_leapfrog=jnp.int32(0), turning=jnp.array(False), diverging=jnp.array(False),
        irreversible=jnp.array(False),
    )
    checkpoints = (jnp.zeros((num_levels, dim), start.momentum.dtype),) * 2

    def going_on(carry):
        tree, _, _ = carry
        stopped = tree.turning | tree.diverging | tree.irreversible
        return (tree.num_leaves < jnp.left_shift(jnp.int32(1), depth)) & ~stopped

    def add_leaf(carry):
        tree, (momenta, sums_before), key = carry
        key, pick_key = jax.random.split(key)
        leaf, energy, irreversible, used = take_step(tree.end, step)
        delta = energy - energy_start
        delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
        leaf_log_weight = jnp.where(irreversible, -jnp.inf, -delta)
        log_weight = jnp.logaddexp(tree.log_weight, leaf_log_weight)
        share = jnp.where(jnp.isfinite(log_weight), jnp.exp(leaf_log_weight - log_weight), 0.0)
        take = jax.random.bernoulli(pick_key, share)

        index = tree.num_leaves
        level = jax.lax.population_count(index)
        opens = (index & 1) == 0
        momenta = jnp.where(opens, momenta.at[level].set(leaf.momentum), momenta)
        sums_before = jnp.where(opens, sums_before.at[level].set(tree.momentum_sum), sums_before)
        momentum_sum = tree.momentum_sum + leaf.momentum
        closing = jax.lax.population_count(index ^ (index + 1)) - 1
        checked = (levels >= level - closing) & (levels < level)
        spans = momentum_sum - sums_before
        turned = ((jnp.sum(_velocity(inverse_mass, momenta) * spans, axis=-1) <= 0)
                  | (spans @ _velocity(inverse_mass, leaf.momentum) <= 0))

        tree = _Subtree(
            end=leaf,
            proposal=_select(take, leaf, tree.proposal),
            proposal_energy=jnp.where(take, energy, tree.proposal_energy),
            log_weight=log_weight,
            momentum_sum=momentum_sum,
            num_leaves=index + 1,
            sum_accept=tree.sum_accept + jnp.where(irreversible, 0.0, jnp.minimum(jnp.exp(-delta), 1.0)),
            num_leapfrog=tree.num_leapfrog + used,
            turning=jnp.any(checked & turned),
            diverging=delta > MAX_DELTA_ENERGY,
            irreversible=irreversible,
        )
        return tree, (momenta, sums_before), key

    tree, _, _ = jax.lax.while_loop(going_on, add_leaf, (initial, checkpoints, rng_key))
    return tree


def build_tree(take_step: Callable, inverse_mass: Array, start: Point, step_size: Array,
               rng_key: Array, max_depth: Array, num_levels: int) -> TreeResult:
    """One NUTS trajectory from ``start`` (its momentum drawn), at most ``max_depth`` doublings.

    Parameters
    ----------
    take_step : callable
        From :func:`make_step`.
    inverse_mass : Array
        The diagonal, or the dense matrix.
    start : Point
        The current position, a fresh momentum, its potential and gradient.
    step_size : float
        The tree's step ``h``.
    rng_key : PRNGKey
        For the directions and the multinomial choices.
    max_depth : int
        The depth bound (may be traced: the warmup's and the sampling's differ).
    num_levels : int
        A static bound on ``max_depth``: the checkpoints' size.
    """
    energy_start = _hamiltonian(inverse_mass, start)
    zero = jnp.zeros((), start.potential.dtype)
    initial = (
        _Subtree(end=start, proposal=start, proposal_energy=energy_start, log_weight=zero,
                 momentum_sum=start.momentum, num_leaves=jnp.int32(0), sum_accept=zero,
                 num_leapfrog=jnp.int32(0), turning=jnp.array(False),
                 diverging=jnp.array(False), irreversible=jnp.array(False)),
        start, jnp.int32(0), rng_key,
    )

    def going_on(carry):
        tree, _, depth, _ = carry
        return (depth < max_depth) & ~(tree.turning | tree.diverging | tree.irreversible)

    def double(carry):
        # ``tree.end`` is the right end, ``left`` the left one.
        tree, left, depth, key = carry
        key, direction_key, subtree_key, pick_key = jax.random.split(key, 4)
        going_right = jax.random.bernoulli(direction_key)
        step = jnp.where(going_right, step_size, -step_size)
        origin = _select(going_right, tree.end, left)
        new = _subtree(take_step, inverse_mass, origin, depth, step, energy_start, subtree_key,
                       num_levels)
        stopped = new.turning | new.diverging | new.irreversible
        share = jnp.where(stopped, 0.0, jnp.minimum(jnp.exp(new.log_weight - tree.log_weight), 1.0))
        take = jax.random.bernoulli(pick_key, share)
        right, left = _select(going_right, new.end, tree.end), _select(going_right, left, new.end)
        momentum_sum = tree.momentum_sum + new.momentum_sum
        tree = _Subtree(
            end=right,
            proposal=_select(take, new.proposal, tree.proposal),
            proposal_energy=jnp.where(take, new.proposal_energy, tree.proposal_energy),
            log_weight=jnp.logaddexp(tree.log_weight, new.log_weight),
            momentum_sum=momentum_sum,
            num_leaves=tree.num_leaves + new.num_leaves,
            sum_accept=tree.sum_accept + new.sum_accept,
            num_leapfrog=tree.num_leapfrog + new.num_leapfrog,
            turning=new.turning | _is_turning(inverse_mass, left.momentum, right.momentum,
                                              momentum_sum),
            diverging=new.diverging,
            irreversible=new.irreversible,
        )
        return tree, left, depth + 1, key

    tree, _, depth, _ = jax.lax.while_loop(going_on, double, initial)
    return TreeResult(
        proposal=tree.proposal, energy=tree.proposal_energy,
        accept_prob=tree.sum_accept / jnp.maximum(tree.num_leaves, 1),
        num_leaves=tree.num_leaves, num_leapfrog=tree.num_leapfrog, depth=depth,
        diverging=tree.diverging, irreversible=tree.irreversible,
    )
