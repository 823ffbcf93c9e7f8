"""Checks at the edge: arguments validated before anything is traced."""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

import numpy as np

from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.result import Fit

if TYPE_CHECKING:
    import numpy.typing as npt


def _check_fit(fit):
    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a dpgmm_ppl.Fit, got {type(fit).__name__}")


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        expected = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {expected}, got {value!r}")


def _check_number(name, value, expected, is_valid):
    """``value`` as a float, or a ValueError saying what was ``expected``."""
    is_real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not is_real or not is_valid(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return float(value)


def _check_pivot(pivot, fit):
    """None, a Fit like ``fit``, or a (chain, draw) pair inside ``fit``."""
    if isinstance(pivot, Fit) and (pivot.num_components, pivot.dim) != (fit.num_components, fit.dim):
        raise ValueError(
            "pivot must be a Fit with the same num_components and data dimension, got "
            f"num_components={pivot.num_components}, dim={pivot.dim}; expected "
            f"num_components={fit.num_components}, dim={fit.dim}"
        )
    if pivot is None or isinstance(pivot, Fit):
        return pivot
    is_pair = isinstance(pivot, tuple) and len(pivot) == 2 and all(
        isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in pivot
    )
    if not is_pair:
        raise TypeError(f"pivot must be None, a Fit or a (chain, draw) tuple of ints, got {pivot!r}")
    chain, draw = pivot
    if not (0 <= chain < fit.num_chains and 0 <= draw < fit.num_draws):
        raise ValueError(
            f"pivot must index a draw in [0, {fit.num_chains}) x [0, {fit.num_draws}), got {pivot}"
        )
    return int(chain), int(draw)


def _check_permutations(permutations: npt.ArrayLike, fit: Fit) -> np.ndarray:
    array = np.asarray(permutations)
    expected = (fit.num_chains, fit.num_draws, fit.num_components)
    if array.shape != expected or array.dtype.kind not in "iu":
        raise ValueError(
            f"permutations must be an int array of shape {expected}, got dtype {array.dtype} "
            f"and shape {array.shape}"
        )
    if not np.all(np.sort(array, axis=-1) == np.arange(fit.num_components)):
        raise ValueError(
            f"permutations must hold a permutation of range({fit.num_components}) per draw"
        )
    return array.astype(np.int64)


def _check_max_points(max_points):
    if max_points is None:
        return None
    return check_positive_int("max_points", max_points, minimum=2)
