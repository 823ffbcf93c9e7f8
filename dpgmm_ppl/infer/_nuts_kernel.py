"""The NUTS transition of the package: its own trees, NumPyro's warmup adaptation.

:func:`init_state` and :func:`make_transition` are what :func:`~dpgmm_ppl.infer.nuts.run_nuts`
runs in its compiled loop and what :func:`~dpgmm_ppl.infer.nuts.init` and
:func:`~dpgmm_ppl.infer.nuts.step` give a user. The state is NumPyro's
:data:`~numpyro.infer.hmc.HMCState`, and the step size and mass matrix are
adapted by NumPyro's public :func:`~numpyro.infer.hmc_util.warmup_adapter`
(dual averaging, Welford windows), so a chain's warmup follows NumPyro's
schedule. The trajectory is :func:`~dpgmm_ppl.infer._nuts_tree.build_tree`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.hmc import HMCState
from numpyro.infer.hmc_util import IntegratorState, warmup_adapter

from dpgmm_ppl.infer._nuts_tree import Point, build_tree, make_step

__all__ = ["DEFAULT_ENERGY_TOLERANCE", "TreeStats", "init_state", "make_transition"]

#: The largest change of the Hamiltonian within one step of the tree before it is halved.
#: Chosen against 20, 50 and 200 on the seed data (benchmarks/README.md, "The default
#: energy tolerance"): at 20, and on one chain in 16 at 200, a chain where the adapted step
#: needs halving loses its trees to the reversibility test and four chains disagree.
DEFAULT_ENERGY_TOLERANCE = 100.0


class TreeStats(NamedTuple):
    """Per-transition statistics that :data:`~numpyro.infer.hmc.HMCState` has no field for."""

    irreversible: Any
    num_leapfrog: Any
    tree_depth: Any


def _adapter(num_warmup, dense_mass, target_accept_prob):
    return warmup_adapter(num_warmup, dense_mass=bool(dense_mass),
                          target_accept_prob=target_accept_prob)


def init_state(potential_fn: Callable, position: Any, rng_key: jax.Array, *, num_warmup: int,
               dense_mass: bool, target_accept_prob: float,
               inverse_mass: jax.Array | None = None) -> HMCState:
    """The chain's state at ``position``: the potential, its gradient and the
    adaptation's start (step size 1, the identity or ``inverse_mass``)."""
    adapt_init, _ = _adapter(num_warmup, dense_mass, target_accept_prob)
    potential, gradient = jax.value_and_grad(potential_fn)(position)
    chain_key, adapt_key = jax.random.split(rng_key)
    zero = jnp.zeros((), jnp.result_type(float))
    adapt_state = adapt_init(IntegratorState(position, None, potential, gradient), adapt_key,
                             zero + 1.0, inverse_mass_matrix=inverse_mass)
    return HMCState(
        i=jnp.int32(0), z=position, z_grad=gradient, potential_energy=potential,
        energy=potential, r=None, trajectory_length=None, num_steps=jnp.int32(0),
        accept_prob=zero, mean_accept_prob=zero, diverging=jnp.array(False),
        adapt_state=adapt_state, rng_key=chain_key,
    )


def make_transition(potential_fn: Callable, *, num_warmup: int, dense_mass: bool,
                    target_accept_prob: float, max_tree_depth: int | tuple[int, int],
                    energy_tolerance: float | None) -> Callable:
    """``transition(state) -> (state, TreeStats)``: one trajectory, adapting while
    ``state.i < num_warmup``.

    ``max_tree_depth`` is an int or the pair ``(warmup, sampling)``;
    ``energy_tolerance`` is the halving rule's bound (``None``: plain leapfrog).
    """
    _, adapt_update = _adapter(num_warmup, dense_mass, target_accept_prob)
    depths = max_tree_depth if isinstance(max_tree_depth, tuple) else (max_tree_depth,) * 2

    def transition(state):
        flat, unravel = ravel_pytree(state.z)
        potential_and_gradient = jax.value_and_grad(lambda x: potential_fn(unravel(x)))
        key, momentum_key, tree_key = jax.random.split(state.rng_key, 3)
        adapt = state.adapt_state
        noise = jax.random.normal(momentum_key, flat.shape, flat.dtype)
        root = adapt.mass_matrix_sqrt
        momentum = root * noise if root.ndim == 1 else root @ noise
        start = Point(flat, momentum, state.potential_energy, ravel_pytree(state.z_grad)[0])
        in_warmup = state.i < num_warmup
        tree = build_tree(
            make_step(potential_and_gradient, adapt.inverse_mass_matrix, energy_tolerance),
            adapt.inverse_mass_matrix, start, adapt.step_size, tree_key,
            jnp.where(in_warmup, depths[0], depths[1]), max(depths),
        )
        position, gradient = unravel(tree.proposal.position), unravel(tree.proposal.gradient)
        new_point = IntegratorState(position, None, tree.proposal.potential, gradient)
        adapt = jax.lax.cond(
            in_warmup, lambda: adapt_update(state.i, tree.accept_prob, new_point, adapt),
            lambda: adapt,
        )
        count = jnp.where(in_warmup, state.i + 1, state.i + 1 - num_warmup)
        state = state._replace(
            i=state.i + 1, z=position, z_grad=gradient, potential_energy=tree.proposal.potential,
            energy=tree.energy, num_steps=tree.num_leaves, accept_prob=tree.accept_prob,
            mean_accept_prob=state.mean_accept_prob
            + (tree.accept_prob - state.mean_accept_prob) / count,
            diverging=tree.diverging, adapt_state=adapt, rng_key=key,
        )
        return state, TreeStats(tree.irreversible, tree.num_leapfrog, tree.depth)

    return transition

