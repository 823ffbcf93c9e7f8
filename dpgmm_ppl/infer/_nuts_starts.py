"""Where NUTS starts: k-means++ seedings descended towards the mode, and the first mass matrix.

Each piece is one compiled program kept for later fits of the same shape
(:func:`~dpgmm_ppl.infer._common.cached_program`): the data and the
density's arguments come in as arguments, never as constants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from dpgmm_ppl.infer._common import cached_program, compile_and_run
from dpgmm_ppl.infer._optimise import optimise
from dpgmm_ppl.infer._progress import StepBar
from dpgmm_ppl.reparam import log_weights_from_coordinates

__all__ = ["CANDIDATES_PER_CHAIN", "active_components", "descend", "hessian_inverse_mass",
           "init_positions", "sort_by_weight", "sorted_values"]

#: k-means++ seedings descended per chain when ``num_init_steps > 0``.
CANDIDATES_PER_CHAIN = 4


def descend(density, num_steps):
    """Adam on the potential, from a start towards its mode: ``(position, data) -> position``.

    A non-finite step keeps the last finite point, as MAP does.
    """
    optimizer = optax.adam(optax.cosine_decay_schedule(0.05, num_steps))

    def run(position, data):
        return optimise(density.potential_fn, optimizer, position, data, num_steps=num_steps).params

    return run


def sort_by_weight(values):
    """Every per-component site (all but ``alpha``) in order of decreasing weight."""
    order = jnp.argsort(-values.get("log_weights", values["weights"]))
    return {name: value if name == "alpha" else value[order] for name, value in values.items()}


def _with_log_weights(density, position):
    """The constrained values of a non-centred ``position`` and its log weights.

    The log weights come from the stick coordinates in log space: weights
    that underflow float32 (the tail of many spare components) keep finite
    coordinates when the components are reordered and charted again.
    """
    values = density.constrain_fn(position)
    exponentials = position.get("weights_exponentials")
    values["log_weights"] = log_weights_from_coordinates(
        values["alpha"],
        position.get("weights_logits"),
        None if exponentials is None else jnp.exp(exponentials),
    )
    return values


def _run(program, args):
    """Run a cached program; its compile seconds are counted by the caller's timer."""
    outputs, _ = compile_and_run(program, args, StepBar("", 0, enabled=False))
    return outputs


def init_positions(rng_key, density, num_chains, num_init_steps):
    """One unconstrained start per chain, stacked on a chain axis.

    Without descent, one k-means++ seeding per chain. With ``num_init_steps``,
    :data:`CANDIDATES_PER_CHAIN` seedings per chain each descend the
    potential, the ``num_chains`` lowest are kept, and their components are
    put in order of decreasing weight. The candidates seed
    :func:`active_components` of the components and leave the rest empty.
    """
    num_starts = num_chains * (CANDIDATES_PER_CHAIN if num_init_steps else 1)
    template = density._replace(data=None)
    num_active = jnp.asarray(active_components(density.num_components, num_chains)
                             if num_init_steps else [density.num_components] * num_chains)

    def build():
        def starts(keys, num_active, data, params):
            bound = template.bind(params)
            # The seeding skips the padding rows.
            positions = jax.vmap(lambda key, active: bound.seed_position(key, data, active))(
                keys, num_active)
            if not num_init_steps:
                return positions
            run = descend(bound, num_init_steps)
            # lax.map, not vmap: on the CPU one start at a time is faster.
            ends = jax.lax.map(lambda one: run(one, data), positions)
            potentials = jax.lax.map(lambda one: bound.potential_fn(one, data), ends)
            potentials = jnp.where(jnp.isfinite(potentials), potentials, jnp.inf)
            best = jnp.argsort(potentials)[:num_chains]
            ends = jax.tree_util.tree_map(lambda leaf: leaf[best], ends)
            values = jax.vmap(lambda end: sort_by_weight(bound.constrain_fn(end)))(ends)
            return jax.vmap(bound.unconstrain_fn)(values)

        return jax.jit(starts)

    program = cached_program(
        ("nuts-starts", density.program.key, num_chains, num_init_steps), build
    )
    keys = jax.random.split(rng_key, num_starts)
    return _run(program, (keys, num_active, density.data, density.params))


def active_components(num_components, num_chains):
    """Components each candidate start seeds with data: all, then half, a quarter, ...

    Seeded over every component, a descent of a thousand steps ends with
    each cluster split over several components (on the seed data at K = 25,
    key 1, the kept starts' largest weight 0.13 to 0.17 against a true
    0.53), and NUTS spends its warmup merging them, some chains into other
    configurations than the rest. With this ladder the kept starts end lower
    on the potential and nearer the occupied clusters (there, 53,747 to
    53,749 against 53,757 to 53,759; ``benchmarks/README.md``); the lowest
    potentials pick among the :data:`CANDIDATES_PER_CHAIN` sizes per chain.

    Examples
    --------
    >>> active_components(25, 2).tolist()
    [25, 13, 7, 4, 25, 13, 7, 4]
    """
    ladder = [max(1, -(-num_components // 2**j)) for j in range(CANDIDATES_PER_CHAIN)]
    return np.array(ladder * num_chains, np.int32)


def sorted_values(density, positions):
    """The constrained values of ``positions`` (a chain axis first), with
    their log weights, components in order of decreasing weight."""
    template = density._replace(data=None)

    def build():
        def sort(positions, params):
            bound = template.bind(params)
            return jax.vmap(lambda one: sort_by_weight(_with_log_weights(bound, one)))(positions)

        return jax.jit(sort)

    program = cached_program(("nuts-sort", density.program.key), build)
    return _run(program, (positions, density.params))


def unconstrain_all(density, values):
    """``density.unconstrain_fn`` over a leading chain axis, compiled once per chart."""
    template = density._replace(data=None)

    def build():
        return jax.jit(lambda values, params: jax.vmap(template.bind(params).unconstrain_fn)(values))

    program = cached_program(("nuts-unconstrain", density.program.key), build)
    return _run(program, (values, density.params))


def hessian_inverse_mass(density, starts, dense_mass):
    """NumPyro's starting inverse mass matrix: one over the potential's curvature at the starts.

    The diagonal of the potential's Hessian at each chain's start (one
    Hessian-vector product per coordinate, under ``lax.map`` so that memory
    stays that of one gradient), its median over the chains, floored at 1 so
    that no coordinate starts wider than under the identity; ``1 / h`` is
    the diagonal of the inverse mass (a diagonal matrix when the mass is
    dense). The order is that of :func:`jax.flatten_util.ravel_pytree`,
    which is NumPyro's for a pytree position.
    """
    template = density._replace(data=None)

    def build():
        def curvature(starts, data, params):
            bound = template.bind(params)

            def one_start(position):
                flat, unravel = ravel_pytree(position)
                grad = jax.grad(lambda point: bound.potential_fn(unravel(point), data))

                def one_coordinate(index):
                    direction = jnp.zeros_like(flat).at[index].set(1.0)
                    return jax.jvp(grad, (flat,), (direction,))[1][index]

                return jax.lax.map(one_coordinate, jnp.arange(flat.size))

            diagonals = jax.lax.map(one_start, starts)
            diagonals = jnp.where(jnp.isfinite(diagonals), diagonals, 1.0)
            return 1.0 / jnp.maximum(jnp.median(diagonals, axis=0), 1.0)

        return jax.jit(curvature)

    program = cached_program(("nuts-hessian", density.program.key), build)
    inverse_mass = _run(program, (starts, density.data, density.params))
    return jnp.diag(inverse_mass) if dense_mass else inverse_mass
