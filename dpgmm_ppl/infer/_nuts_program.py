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
from numpyro.infer.hmc import hmc

from dpgmm_ppl.infer._common import cached_program, compile_and_run

__all__ = ["EXTRA_FIELDS", "run_sampler"]

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
            state = sample_kernel(state, model_args=model_args)
            bar.report(1, state.potential_energy)
            return state, None

        def draw(state, _):
            state = sample_kernel(state, model_args=model_args)
            bar.report(1, state.potential_energy)
            return state, (state.z, _extra_fields(state))

        state, _ = jax.lax.scan(warmup, state, None, length=num_warmup)
        state, (draws, fields) = jax.lax.scan(draw, state, None, length=num_samples)
        return state.z, draws, fields

    return run_chain


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
