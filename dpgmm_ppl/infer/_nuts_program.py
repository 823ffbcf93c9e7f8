"""NumPyro's NUTS kernel as one compiled program, kept for every fit of its shape.

:class:`numpyro.infer.MCMC` compiles its sampler for the potential function
it is handed, so each fit, with other data or priors, paid the compilation
again. Here the kernel is NumPyro's functional one
(:func:`numpyro.infer.hmc.hmc` with ``algo="NUTS"``, the kernel behind
:class:`numpyro.infer.NUTS`, with its step-size and mass-matrix adaptation)
and the data and the density's arguments reach the potential as model
arguments (``potential_fn_gen``). The warmup and the draws are two
``lax.scan`` loops in one jitted function of ``(keys, starts, inverse mass,
data, params)``, kept by :func:`~dpgmm_ppl.infer._common.cached_program`.
"""

from __future__ import annotations

import jax
import numpy as np
from numpyro.infer.hmc import hmc

from dpgmm_ppl.infer._common import cached_program, compile_and_run
from dpgmm_ppl.infer._nuts_moves import make_jumps

__all__ = ["EXTRA_FIELDS", "run_sampler", "sample_stats_of"]

#: Per-draw fields of the kernel's state that are kept (NumPyro's names).
EXTRA_FIELDS = (
    "potential_energy", "accept_prob", "num_steps", "adapt_state.step_size", "energy",
    "diverging",
)


def _extra_fields(state):
    return {
        "potential_energy": state.potential_energy,
        "accept_prob": state.accept_prob,
        "num_steps": state.num_steps,
        "adapt_state.step_size": state.adapt_state.step_size,
        "energy": state.energy,
        "diverging": state.diverging,
    }


def _make_chain(template, settings, bar):
    """``run_chain(key, start, inverse_mass, data, params) -> (last position, draws, fields)``."""
    num_warmup, num_samples = settings["num_warmup"], settings["num_samples"]

    def potential_fn_gen(data, params):
        density = template.bind(params)
        return lambda position: density.potential_fn(position, data)

    def run_chain(rng_key, start, inverse_mass, data, params):
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
        model_args = (data, params)
        num_jumps = settings["split_merge"]
        transition = _with_jumps(sample_kernel, template, num_jumps, data, params)
        state = init_kernel(
            start,
            num_warmup,
            inverse_mass_matrix=inverse_mass,
            dense_mass=settings["dense_mass"],
            target_accept_prob=settings["target_accept_prob"],
            trajectory_length=None,
            max_tree_depth=settings["max_tree_depth"],
            model_args=model_args,
            rng_key=rng_key,
        )

        def warmup(state, _):
            state, _ = transition(state, model_args)
            bar.report(1, state.potential_energy)
            return state, None

        def draw(state, _):
            state, jumps = transition(state, model_args)
            bar.report(1, state.potential_energy)
            fields = _extra_fields(state)
            if num_jumps:
                fields["jumps_accepted"] = jumps
            return state, (state.z, fields)

        state, _ = jax.lax.scan(warmup, state, None, length=num_warmup)
        state, (draws, fields) = jax.lax.scan(draw, state, None, length=num_samples)
        return state.z, draws, fields

    return run_chain


def _with_jumps(sample_kernel, template, num_jumps, data, params):
    """NUTS's transition followed by ``num_jumps`` split-merge proposals
    (:mod:`~dpgmm_ppl.infer._nuts_moves`); NUTS's own with none."""
    if not num_jumps:
        return lambda state, model_args: (sample_kernel(state, model_args=model_args), None)
    density = template.bind(params)
    jump = make_jumps(
        lambda z: density.potential_fn(z, data), density.num_centered_sticks, num_jumps
    )

    def transition(state, model_args):
        state = sample_kernel(state, model_args=model_args)
        key, jump_key = jax.random.split(state.rng_key)
        z, potential, grad, accepted = jump(
            jump_key, state.z, state.potential_energy, state.z_grad,
            params.num_data, params.priors,
        )
        state = state._replace(z=z, potential_energy=potential, z_grad=grad, rng_key=key)
        return state, accepted

    return transition


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
        ``(warmup, sampling)``), as NumPyro's ``NUTS`` takes them.

    Returns
    -------
    (last_positions, draws, fields, timing)
        Each chain's last position, its draws ``(chain, draw, ...)``, the
        :data:`EXTRA_FIELDS` per draw, and ``compile_seconds`` /
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


#: Fields of the kernel state recorded per draw, and their ArviZ names.
_STAT_NAMES = {
    "potential_energy": "lp",
    "accept_prob": "acceptance_rate",
    "num_steps": "n_steps",
    "adapt_state.step_size": "step_size",
    "energy": "energy",
}


def sample_stats_of(extra_fields, max_tree_depth):
    """The per-draw fields of :func:`run_sampler` as ArviZ's sample statistics.

    ``max_tree_depth`` is the sampling bound on the tree depth; a draw whose
    tree reached it is marked in ``reached_max_treedepth`` (PyMC's name).
    """
    stats = {name: extra_fields[field] for field, name in _STAT_NAMES.items()}
    stats["lp"] = -stats["lp"]
    stats["diverging"] = extra_fields["diverging"]
    if "jumps_accepted" in extra_fields:
        stats["jumps_accepted"] = extra_fields["jumps_accepted"]
    # NumPyro does not record the depth. A tree of depth d that runs to the
    # end takes 2**d - 1 leapfrog steps, so this is exact for those (ArviZ's
    # own NumPyro converter uses the same formula); a tree stopped early by
    # a U-turn or a divergence inside a subtree reports the depth it reached.
    n_steps = np.maximum(np.asarray(stats["n_steps"]), 1)
    stats["tree_depth"] = np.floor(np.log2(n_steps)).astype(np.int64) + 1
    # As Stan counts it: the last doubling was begun, whether or not it ended in a U-turn.
    stats["reached_max_treedepth"] = stats["tree_depth"] >= max_tree_depth
    return stats
