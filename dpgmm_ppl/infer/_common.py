"""Pieces the optimisation-based backends share (MAP, SVI, NUTS's descent)."""

from __future__ import annotations

import collections
import time
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dpgmm_ppl.infer._stored_programs import compile_stored, stable_key

if TYPE_CHECKING:
    from dpgmm_ppl.infer._progress import StepBar

#: What ``build`` of :func:`cached_program` makes.
_Program = TypeVar("_Program")

#: ``chain_method`` values of the optimisers (MAP, SVI).
OPTIMIZER_CHAIN_METHODS = ("vectorized", "sequential")


class CompileTimer:
    """Wall time JAX spends tracing, lowering and compiling while active.

    JAX reports each of these phases as a time span through
    :mod:`jax.monitoring`; spans nest (tracing an outer function traces the
    inner ones), so the timer measures the union of the spans, not their sum.
    """

    _PREFIX = "/jax/core/compile/"

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def _record(self, event: str, start_time: float, end_time: float, **kwargs: str | int) -> None:
        if event.startswith(self._PREFIX):
            self.spans.append((start_time, end_time))

    def __enter__(self) -> CompileTimer:
        jax.monitoring.register_event_time_span_listener(self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._record)

    @property
    def seconds(self) -> float:
        total, end = 0.0, -np.inf
        for span_start, span_end in sorted(self.spans):
            if span_end > end:
                total += span_end - max(span_start, end)
                end = span_end
        return total


def tree_all_finite(tree: Any) -> jax.Array:
    """True when every leaf of ``tree`` is finite everywhere (a traced scalar)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def guarded_update(
    optimizer: optax.GradientTransformation,
    loss: jax.Array,
    grad: Any,
    params: Any,
    opt_state: Any,
) -> tuple[Any, Any, jax.Array]:
    """One optax step that leaves ``(params, opt_state)`` as they were if it is not finite.

    A non-finite loss or gradient keeps the last finite point, so an
    optimisation never ends in NaN; the loss trace still shows the step.

    Returns
    -------
    (params, opt_state, is_finite)
    """
    updates, new_opt_state = optimizer.update(grad, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    is_finite = jnp.isfinite(loss) & tree_all_finite(grad)
    params, opt_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(is_finite, new, old),
        (new_params, new_opt_state),
        (params, opt_state),
    )
    return params, opt_state, is_finite


def history_steps(num_steps: int, history_every: int) -> np.ndarray:
    """The 1-based steps at which a history frame is recorded (and the last step)."""
    steps = np.arange(history_every, num_steps + 1, history_every)
    if num_steps % history_every:
        steps = np.append(steps, num_steps)
    return steps


def resolve_optimizer_chain_method(chain_method: str | None) -> str:
    """``None`` is ``"sequential"`` on the CPU (faster there, measured) and ``"vectorized"`` elsewhere."""
    if chain_method is None:
        return "sequential" if jax.default_backend() == "cpu" else "vectorized"
    return chain_method


def check_optimizer_options(options: Mapping[str, Any], *, example: str) -> None:
    """Validate ``optimizer`` and ``chain_method`` of MAP and SVI."""
    optimizer = options["optimizer"]
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (for example "
            f"{example}), got {type(optimizer).__name__}"
        )
    if options["chain_method"] not in (None,) + OPTIMIZER_CHAIN_METHODS:
        raise ValueError(
            "chain_method must be None, 'vectorized' or 'sequential', "
            f"got {options['chain_method']!r}"
        )


#: Backend programs kept per process, and the executables compiled from them.
MAX_CACHED_PROGRAMS = 64
_PROGRAMS: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()
#: (What went through the store, infer/_stored_programs.py, is a function calling
#: the executable, with the program's signature.)
_EXECUTABLES: collections.OrderedDict[Hashable, Callable[..., Any]] = collections.OrderedDict()

#: The key of each kept program as :func:`~dpgmm_ppl.infer._stored_programs.stable_key`
#: writes it, where there is one: the name of the program on disk.
_STORE_KEYS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

#: How many backend programs were built (traced) and compiled in this process,
#: and how many of the compiled ones were read from disk, traced already.
PROGRAM_COUNTS = {"built": 0, "compiled": 0, "read": 0}


def _remember(cache, key, value):
    cache[key] = value
    while len(cache) > MAX_CACHED_PROGRAMS:
        cache.popitem(last=False)
    return value


def cached_program(key: Hashable, build: Callable[[], _Program]) -> _Program:
    """The program for the hashable ``key``, built by ``build()`` the first time.

    ``key`` holds everything that shapes the program and is not one of its
    arguments (the backend, its static options, the density's shape and
    chart); a fit whose key was seen before runs what was compiled for it.
    """
    try:
        program = _PROGRAMS.pop(key)
    except KeyError:
        PROGRAM_COUNTS["built"] += 1
        program = build()
        store_key = stable_key(key)
        if store_key is not None:
            _STORE_KEYS[program] = store_key
    except TypeError:  # an unhashable part (a user's optimiser): not kept
        PROGRAM_COUNTS["built"] += 1
        return build()
    return _remember(_PROGRAMS, key, program)


def _signature(args):
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return treedef, tuple(
        (np.shape(leaf), getattr(leaf, "dtype", type(leaf)), getattr(leaf, "weak_type", False),
         getattr(leaf, "sharding", None))
        for leaf in leaves
    )


def chains_program(run_chain: Callable[..., Any], chain_method: str | None) -> jax.stages.Wrapped:
    """``run_chain(key, *args)`` over a batch of keys, jitted: vmapped or one after another.

    ``"vectorized"`` runs the chains under ``vmap``; ``"sequential"`` under
    ``lax.map``, in the same compiled program (see
    :func:`resolve_optimizer_chain_method` for the default).
    """
    if resolve_optimizer_chain_method(chain_method) == "vectorized":
        return jax.jit(jax.vmap(run_chain, in_axes=(0, None, None)))
    return jax.jit(
        lambda keys, data, params: jax.lax.map(lambda key: run_chain(key, data, params), keys)
    )


def compile_and_run(
    program: jax.stages.Wrapped, args: Sequence[Any], bar: StepBar
) -> tuple[Any, dict[str, float]]:
    """Compile the jitted ``program`` for ``args`` (or take what was compiled
    for arguments of the same shapes), then run it, the progress ``bar`` open.

    Returns
    -------
    (outputs, timing)
        The program's outputs, ready, and ``compile_seconds`` / ``run_seconds``.
    """
    with bar:
        start = time.perf_counter()
        key = (program, _signature(args))
        compiled: Callable[..., Any] | None = _EXECUTABLES.pop(key, None)
        if compiled is None:
            PROGRAM_COUNTS["compiled"] += 1
            # Without a bar's callbacks (they cannot be written), from the
            # disk where an earlier process stored it traced.
            store_key = None if bar.in_program else _STORE_KEYS.get(program)
            stored = compile_stored(program, args, store_key)
            if stored is None:
                compiled = program.lower(*args).compile()
            else:
                compiled, was_read = stored
                PROGRAM_COUNTS["read"] += was_read
        _remember(_EXECUTABLES, key, compiled)
        compile_seconds = time.perf_counter() - start
        bar.start()
        start = time.perf_counter()
        outputs = jax.block_until_ready(compiled(*args))
        run_seconds = time.perf_counter() - start
        bar.finish()
    return outputs, {"compile_seconds": compile_seconds, "run_seconds": run_seconds}
