"""Checks at the edge of the public API, run before anything is traced.

Every error names the argument, what was given and what was expected.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np

__all__ = ["check_data", "check_positive_int", "check_rng_key"]


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_positive_int(name, value, *, minimum=1):
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer >= {minimum}, got {_describe(value)} "
            f"of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_data(data, *, name="data", min_points=2):
    """Validate observations and return them as a float array of shape (N,) or (N, D).

    Rejects non-numeric, complex and boolean arrays, NaN and inf (naming the
    first bad row), empty arrays, 0-d and >2-d arrays, and fewer than
    ``min_points`` points.
    Integer arrays are converted to floats.
    """
    if hasattr(data, "__jax_array__") or isinstance(data, jax.Array):
        data = np.asarray(data)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"{name} must be a rectangular numeric array of shape (N,) or (N, D); "
            f"could not convert it: {error}"
        ) from None
    kind = array.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must hold real numbers, got a boolean array")
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers, got a complex array")
    if kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers, got an array of dtype {array.dtype}"
        )
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{name} must have shape (N,) or (N, D), got a {array.ndim}-d array "
            f"of shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if array.shape[0] < min_points:
        raise ValueError(
            f"{name} must hold at least {min_points} points, got {array.shape[0]}"
        )
    if kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            rows = finite if array.ndim == 1 else finite.all(axis=1)
            row = int(np.flatnonzero(~rows)[0])
            raise ValueError(
                f"{name} must be finite; row {row} holds {array[row]!r}"
            )
    return array


def check_rng_key(rng_key):
    """Accept an int seed or a JAX PRNG key (raw uint32[2] or typed); return a raw key."""
    if isinstance(rng_key, (bool, np.bool_)):
        raise TypeError(f"rng_key must be an int or a jax PRNG key, got {rng_key!r}")
    if isinstance(rng_key, numbers.Integral):
        return jax.random.PRNGKey(int(rng_key))
    array = rng_key
    if isinstance(array, jax.Array) and jax.dtypes.issubdtype(
        array.dtype, jax.dtypes.prng_key
    ):
        if array.shape != ():
            raise ValueError(f"rng_key must be a single key, got shape {array.shape}")
        return jax.random.key_data(array)
    array = np.asarray(array) if not isinstance(array, jax.Array) else array
    if array.dtype != np.uint32 or array.shape != (2,):
        raise TypeError(
            "rng_key must be an int or a jax PRNG key (jax.random.PRNGKey(seed)), "
            f"got {type(rng_key).__name__} with dtype {getattr(array, 'dtype', None)} "
            f"and shape {getattr(array, 'shape', None)}"
        )
    return jax.numpy.asarray(array)


def check_parameterization(value):
    """``"centered"`` or ``"noncentered"``: the chart of the unconstrained space."""
    choices = ("centered", "noncentered")
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"parameterization must be 'centered' or 'noncentered', got {_describe(value)}"
        )
    return value
