"""SVI's restarts as one compiled program, and what they hand back.

Each restart seeds its family's mean by k-means++, runs the optimiser
inside ``lax.scan`` (writing a history frame every ``history_every`` steps),
then draws from the fitted family; the restarts run under
:func:`~dpgmm_ppl.infer._common.chains_program`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dpgmm_ppl.infer._common import history_steps
from dpgmm_ppl.infer.base import BackendOutput

__all__ = ["make_chain_runner", "output", "warn_on_skipped_steps"]


def make_chain_runner(template, guide, unravel, make_step, init_state, options, bar):
    """``run_chain(rng_key, data, params)``: one restart, fitted and drawn from.

    ``template`` gives the density's shape and chart; its data and priors
    come in as ``data`` and ``params``, so fits of other data of the same
    shape run the same compiled program. ``make_step(potential_fn)`` builds
    the optimiser step (:func:`~dpgmm_ppl.infer.svi.build_step`) and
    ``init_state(params)`` the state it starts from.
    """
    num_steps, history_every = options["num_steps"], options["history_every"]
    num_frames = -(-num_steps // history_every)

    def run_chain(rng_key, data, params):
        density = template.bind(params)
        step = make_step(density.potential_fn)
        key_init, key_fit, key_draws = jax.random.split(rng_key, 3)
        # The seeding skips the padding rows.
        mean = ravel_pytree(density.seed_position(key_init, data))[0]

        # One scan over every step, writing a history frame in place every
        # ``history_every`` steps and at the last: a single copy of the step's
        # body (and of the potential's gradient) for XLA to compile.
        def one_step(carry, index):
            state, frames = carry
            state, info = step(state, jax.random.fold_in(key_fit, index), data)
            is_frame = ((index + 1) % history_every == 0) | (index + 1 == num_steps)
            slot = index // history_every
            frame = jnp.where(is_frame, guide.mean(state.params), frames[slot])
            # The steps since the last frame; a branch taken once per frame.
            bar.report_if(is_frame, index % history_every + 1, info.loss)
            return (state, frames.at[slot].set(frame)), info.loss

        params = guide.init(mean)
        frames = jnp.zeros((num_frames,) + mean.shape, mean.dtype)
        carry = (init_state(params), frames)
        (state, frames), losses = jax.lax.scan(one_step, carry, jnp.arange(num_steps))
        draws = guide.sample(state.params, key_draws, options["num_samples"])
        potential = jax.lax.map(lambda z: density.potential_fn(unravel(z), data), draws)
        history = jax.vmap(lambda z: density.constrain_fn(unravel(z)))(frames)
        return jax.vmap(unravel)(draws), -potential, losses, history

    return run_chain


def warn_on_skipped_steps(losses):
    for chain, chain_losses in enumerate(np.asarray(losses)):
        bad = np.flatnonzero(~np.isfinite(chain_losses))
        if bad.size:
            warnings.warn(
                f"SVI restart {chain}: the loss was not finite at {bad.size} of "
                f"{chain_losses.size} steps (first at step {bad[0] + 1}); those steps "
                "were skipped. A smaller learning rate or more particles may help.",
                RuntimeWarning,
                stacklevel=5,
            )


def output(positions, lp, losses, history, num_steps, history_every, timing):
    """The :class:`~dpgmm_ppl.infer.base.BackendOutput` of the restarts, after a
    warning for any skipped step."""
    warn_on_skipped_steps(losses)
    return BackendOutput(
        positions=positions,
        sample_stats={"lp": lp, "loss": jnp.broadcast_to(losses[:, -1:], lp.shape)},
        losses=losses,
        history=history,
        history_steps=history_steps(num_steps, history_every),
        timing=timing,
    )
