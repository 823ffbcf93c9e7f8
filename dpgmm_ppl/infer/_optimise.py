"""The one optimiser loop: ``value_and_grad`` and a guarded optax update inside ``lax.scan``.

MAP's restarts, the descent of NUTS's starting points and the scaling
benchmark all run this loop, in the manner of dynamax's
``run_gradient_descent``: any ``optax.GradientTransformation``, the step
skipped where the loss or the gradient is not finite
(:func:`~dpgmm_ppl.infer._common.guarded_update`), the final parameters,
optimiser state and every step's loss returned. SVI's step and MAP's public
``step`` are :func:`optimizer_step`, the body of that loop.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from dpgmm_ppl.infer._common import guarded_update

__all__ = ["Optimised", "optimise", "optimizer_step"]


class Optimised(NamedTuple):
    """What :func:`optimise` returns."""

    params: Any
    opt_state: Any
    losses: Any
    history: Optional[Any]


def optimizer_step(loss_fn, optimizer):
    """One guarded optimiser step on ``loss_fn``, as a pure function.

    Parameters
    ----------
    loss_fn : Callable
        ``loss_fn(params, *args)``, a scalar to minimise.
    optimizer : optax.GradientTransformation
        Any optax transformation.

    Returns
    -------
    Callable
        ``step(params, opt_state, *args) -> (params, opt_state, loss, is_finite)``,
        ``loss`` being the value at the parameters before the step. A step
        whose loss or gradient is not finite leaves ``params`` and
        ``opt_state`` as they were.

    Examples
    --------
    >>> import jax.numpy as jnp, optax
    >>> optimizer = optax.sgd(0.25)
    >>> step = optimizer_step(lambda x, target: jnp.sum((x - target) ** 2), optimizer)
    >>> start = jnp.zeros(2)
    >>> x, state, loss, is_finite = step(start, optimizer.init(start), jnp.array([2.0, -2.0]))
    >>> x.tolist(), float(loss), bool(is_finite)
    ([1.0, -1.0], 8.0, True)
    """
    value_and_grad = jax.value_and_grad(loss_fn)

    def step(params, opt_state, *args):
        loss, grad = value_and_grad(params, *args)
        params, opt_state, is_finite = guarded_update(optimizer, loss, grad, params, opt_state)
        return params, opt_state, loss, is_finite

    return step


def optimise(loss_fn, optimizer, params, *args, num_steps, opt_state=None,
             history_every=None, after_block: Optional[Callable] = None):
    """``num_steps`` guarded optimiser steps on ``loss_fn(params, *args)`` inside ``lax.scan``.

    Parameters
    ----------
    loss_fn : Callable
        ``loss_fn(params, *args)``, a scalar to minimise.
    optimizer : optax.GradientTransformation
        Any optax transformation.
    params : pytree
        Where the descent starts.
    *args
        The loss's other arguments (the data), the same at every step.
    num_steps : int
        Optimiser steps.
    opt_state : optional
        The optimiser's state to start from; ``optimizer.init(params)`` by default.
    history_every : int, optional
        Run the steps in blocks of this many (the last block shorter when
        ``num_steps`` is not a multiple) and record the parameters after
        each block. ``None``: one block, no history.
    after_block : Callable, optional
        With ``history_every``: ``after_block((params, opt_state), losses,
        is_full) -> (params, opt_state)``, applied after each block (with
        that block's losses; ``is_full`` is ``False`` for the shorter last
        one) and before its parameters are recorded.

    Returns
    -------
    Optimised
        The final ``params`` and ``opt_state``, ``losses`` of shape
        ``(num_steps,)`` and ``history`` (the parameters after each block,
        stacked) or ``None``.

    Examples
    --------
    >>> import jax.numpy as jnp, optax
    >>> result = optimise(lambda x, target: jnp.sum((x - target) ** 2), optax.sgd(0.25),
    ...                   jnp.zeros(1), jnp.array([4.0]), num_steps=3, history_every=2)
    >>> result.losses.tolist(), result.params.tolist(), result.history.tolist()
    ([16.0, 4.0, 1.0], [3.5], [[3.0], [3.5]])
    """
    step = optimizer_step(loss_fn, optimizer)

    def scan_steps(carry, length):
        def body(carry, _):
            params, opt_state, loss, _ = step(*carry, *args)
            return (params, opt_state), loss

        return jax.lax.scan(body, carry, None, length=length)

    carry = (params, optimizer.init(params) if opt_state is None else opt_state)
    if history_every is None:
        (params, opt_state), losses = scan_steps(carry, num_steps)
        return Optimised(params, opt_state, losses, None)

    def block(carry, _):
        carry, losses = scan_steps(carry, history_every)
        if after_block is not None:
            carry = after_block(carry, losses, True)
        return carry, (losses, carry[0])

    num_blocks, remainder = divmod(num_steps, history_every)
    carry, (losses, history) = jax.lax.scan(block, carry, None, length=num_blocks)
    losses = losses.reshape(-1)
    if remainder:
        carry, tail_losses = scan_steps(carry, remainder)
        if after_block is not None:
            carry = after_block(carry, tail_losses, False)
        losses = jnp.concatenate([losses, tail_losses])
        history = jax.tree_util.tree_map(
            lambda frames, last: jnp.concatenate([frames, last[None]]), history, carry[0]
        )
    return Optimised(carry[0], carry[1], losses, history)
