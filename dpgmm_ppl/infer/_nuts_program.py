"""The package's NUTS kernel as one compiled program, kept for every fit of its shape.

:class:`numpyro.infer.MCMC` compiles its sampler for the potential function
it is handed, so each fit, with other data or priors, paid the compilation
again. Here the kernel is the package's (:mod:`~dpgmm_ppl.infer._nuts_kernel`:
NumPyro's step-size and mass-matrix adaptation around trees whose leapfrog
steps halve where the energy changes fast), and the data and the density's
arguments reach the potential as arguments of the program. The warmup and
the draws are two ``lax.scan`` loops in one jitted function of ``(keys,
starts, inverse mass, data, params)``, kept by
:func:`~dpgmm_ppl.infer._common.cached_program`.
"""

from __future__ import annotations

import jax
import numpy as np

from dpgmm_ppl.infer._common import cached_program, compile_and_run
from dpgmm_ppl.infer._nuts_kernel import init_state, make_transition
from dpgmm_ppl.infer._nuts_moves import make_jumps

__all__ = ["run_sampler", "sample_stats_of"]


def _fields(state, tree):
    """What each draw keeps, under NumPyro's names where it has them."""
    return {
        "potential_energy": state.potential_energy,
        "accept_prob": state.accept_prob,
        "num_steps": state.num_steps,
        "adapt_state.step_size": state.adapt_state.step_size,
        "energy": state.energy,
        "diverging": state.diverging,
        "irreversible": tree.irreversible,
        "num_leapfrog": tree.num_leapfrog,
        "tree_depth": tree.tree_depth,
    }


def _make_chain(template, settings, bar):
    """``run_chain(key, start, inverse_mass, data, params) -> (last position, draws, fields)``."""
    num_warmup, num_samples = settings["num_warmup"], settings["num_samples"]

    def run_chain(rng_key, start, inverse_mass, data, params):
        density = template.bind(params)

        def potential_fn(position):
            return density.potential_fn(position, data)

        kernel_settings = dict(num_warmup=num_warmup, dense_mass=settings["dense_mass"],
                               target_accept_prob=settings["target_accept_prob"])
        transition = _with_jumps(
            make_transition(potential_fn, max_tree_depth=settings["max_tree_depth"],
                            energy_tolerance=settings["energy_tolerance"], **kernel_settings),
            potential_fn, density, settings["split_merge"], params,
        )
        state = init_state(potential_fn, start, rng_key, inverse_mass=inverse_mass,
                           **kernel_settings)

        def warmup(state, _):
            state, _ = transition(state)
            bar.report(1, state.potential_energy)
            return state, None

        def draw(state, _):
            state, (tree, jumps) = transition(state)
            bar.report(1, state.potential_energy)
            fields = _fields(state, tree)
            if settings["split_merge"]:
                fields["jumps_accepted"] = jumps
            return state, (state.z, fields)

        state, _ = jax.lax.scan(warmup, state, None, length=num_warmup)
        state, (draws, fields) = jax.lax.scan(draw, state, None, length=num_samples)
        return state.z, draws, fields

    return run_chain


def _with_jumps(transition, potential_fn, density, num_jumps, params):
    """The NUTS transition followed by ``num_jumps`` split-merge proposals
    (:mod:`~dpgmm_ppl.infer._nuts_moves`): ``state -> (state, (tree stats, accepted))``."""
    if not num_jumps:
        def without_jumps(state):
            state, tree = transition(state)
            return state, (tree, None)
        return without_jumps
    jump = make_jumps(potential_fn, density.num_centered_sticks, num_jumps)

    def with_jumps(state):
        state, tree = transition(state)
        key, jump_key = jax.random.split(state.rng_key)
        z, potential, grad, accepted = jump(
            jump_key, state.z, state.potential_energy, state.z_grad,
            params.num_data, params.priors,
        )
        state = state._replace(z=z, potential_energy=potential, z_grad=grad, rng_key=key)
        return state, (tree, accepted)

    return with_jumps


def _chains(run_chain, chain_method):
    in_axes = (0, 0, None, None, None)
    if chain_method == "parallel":
        return jax.pmap(run_chain, in_axes=in_axes)
    if chain_method == "vectorized":
        return jax.jit(jax.vmap(run_chain, in_axes=in_axes))

    def one_after_another(keys, starts, inverse_mass, data, params):
        return jax.lax.map(
            lambda pair: run_chain(pair[0], pair[1], inverse_mass, data, params), (keys, starts)
        )

    return jax.jit(one_after_another)


def run_sampler(rng_key, density, starts, inverse_mass, *, bar, chain_method, **settings):
    """Warm up and draw ``num_chains`` chains of NUTS on ``density``.

    Parameters
    ----------
    rng_key : PRNGKey
        Split into one key per chain.
    density : LogDensity
        The chart to sample in; its data and arguments are the program's arguments.
    starts : dict
        Unconstrained positions with a leading chain axis.
    inverse_mass : Array or None
        The starting inverse mass matrix; ``None`` is the identity.
    bar : StepBar
        Advanced once per iteration of every chain.
    chain_method : {"sequential", "vectorized", "parallel"}
        One chain after another (``lax.map``), in lockstep (``vmap``) or
        one per device (``pmap``).
    **settings
        ``num_warmup``, ``num_samples``, ``target_accept_prob``,
        ``dense_mass`` and ``max_tree_depth`` (an int, or the pair
        ``(warmup, sampling)``), as NumPyro's ``NUTS`` takes them;
        ``energy_tolerance`` (:func:`~dpgmm_ppl.infer._nuts_kernel.make_transition`)
        and ``split_merge``.

    Returns
    -------
    (last_positions, draws, fields, timing)
        Each chain's last position, its draws ``(chain, draw, ...)``, the
        fields per draw (:func:`sample_stats_of` names them), and ``compile_seconds`` /
        ``run_seconds``.
    """
    num_chains = jax.tree_util.tree_leaves(starts)[0].shape[0]
    template = density._replace(data=None)
    key = (
        "nuts", density.program.key, chain_method, bar.enabled,
        tuple(sorted(settings.items())),
    )
    program = cached_program(key, lambda: _chains(_make_chain(template, settings, bar), chain_method))
    keys = jax.random.split(rng_key, num_chains)
    (last, draws, fields), timing = compile_and_run(
        program, (keys, starts, inverse_mass, density.data, density.params), bar
    )
    return last, draws, fields, timing


#: Fields recorded per draw, and their ArviZ names.
_STAT_NAMES = {
    "potential_energy": "lp",
    "accept_prob": "acceptance_rate",
    "num_steps": "n_steps",
    "adapt_state.step_size": "step_size",
    "energy": "energy",
    "diverging": "diverging",
    "irreversible": "irreversible",
    "num_leapfrog": "n_leapfrog",
    "tree_depth": "tree_depth",
    "jumps_accepted": "jumps_accepted",
}


def sample_stats_of(extra_fields, max_tree_depth):
    """The per-draw fields of :func:`run_sampler` as ArviZ's sample statistics.

    ``n_steps`` counts the tree's leaves, ``n_leapfrog`` the leapfrog steps
    taken for them (more where steps were halved, and those of the
    reversibility tests), ``tree_depth`` the doublings begun.
    ``max_tree_depth`` is the sampling bound on the depth; a draw whose tree
    reached it is marked in ``reached_max_treedepth`` (PyMC's name; as Stan
    counts it, the last doubling was begun whether or not it ended in a
    U-turn).
    """
    stats = {name: extra_fields[field] for field, name in _STAT_NAMES.items()
             if field in extra_fields}
    stats["lp"] = -stats["lp"]
    stats["reached_max_treedepth"] = np.asarray(stats["tree_depth"]) >= max_tree_depth
    return stats
