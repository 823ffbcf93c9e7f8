"""Checks at the edge of the public API, run before anything is traced.

Every error names the argument, what was given and what was expected.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np

from dpgmm_ppl.priors import Priors

__all__ = [
    "check_batch_size",
    "check_covariance",
    "check_data",
    "check_names",
    "check_positive_int",
    "check_priors",
    "check_rng_key",
    "check_training_data",
    "column_names",
]

#: Rows per block when the squares of the data are summed in float64.
_SQUARES_BLOCK = 1 << 18

#: Headroom left under the largest float for the per-column sum of squares of the data.
_SQUARES_HEADROOM = 4.0

#: Integer seeds JAX can turn into a key: the int64 range.
_SEED_RANGE = (-(2**63), 2**63)

#: The data-dependent prior fields, each a scalar or one value per data dimension.
_PRIOR_EVENT_FIELDS = ("loc_mean", "loc_scale", "scale_rate")


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


def _first_bad_row(bad, array):
    """Index of the first row of ``array`` with a True in the mask ``bad``."""
    rows = bad if array.ndim == 1 else bad.any(axis=1)
    return int(np.flatnonzero(rows)[0])


def _as_float_dtype(array, dtype, name):
    """``array`` converted to ``dtype``, refusing values that overflow to inf there."""
    with np.errstate(over="ignore"):
        converted = array.astype(dtype, copy=False)
    if array.dtype.kind == "f" and np.dtype(dtype).itemsize < array.dtype.itemsize:
        overflowed = ~np.isfinite(converted)
        if overflowed.any():
            row = _first_bad_row(overflowed, array)
            raise ValueError(
                f"{name} must fit in {np.dtype(dtype).name}; row {row} holds "
                f"{array[row].tolist()}, beyond its largest value "
                f"{float(np.finfo(dtype).max):.3g} (rescale the data)"
            )
    return converted


def _is_pandas(data):
    return type(data).__module__.split(".")[0] == "pandas"


def column_names(data):
    """The column names a pandas DataFrame (or the name a Series) carries; ``None`` otherwise.

    A frame whose columns are pandas' default ``0, 1, ...`` (one built
    from an array) carries no names.

    Examples
    --------
    >>> import pandas as pd
    >>> column_names(pd.DataFrame({"height": [1.0, 2.0], "weight": [3.0, 4.0]}))
    ('height', 'weight')
    >>> column_names(pd.DataFrame([[1.0, 2.0]])) is None, column_names([1.0, 2.0]) is None
    (True, True)
    """
    if not _is_pandas(data):
        return None
    if getattr(data, "ndim", None) == 1:
        label = getattr(data, "name", None)
        return None if label is None else (str(label),)
    columns = list(getattr(data, "columns", ()))
    if not columns or columns == list(range(len(columns))):
        return None
    return tuple(str(column) for column in columns)


def check_names(names, num_columns, *, name="names"):
    """``names`` as a tuple of ``num_columns`` strings, or ``None``; a lone string names one column.

    Examples
    --------
    >>> check_names(["a", "b"], 2), check_names("waiting", 1)
    (('a', 'b'), ('waiting',))
    >>> check_names(["a"], 2)
    Traceback (most recent call last):
    ...
    ValueError: names must hold one name per column of the data (2), got 1: ['a']
    """
    if names is None:
        return None
    if isinstance(names, str):
        names = (names,)
    try:
        names = tuple(names)
    except TypeError:
        raise TypeError(
            f"{name} must be a sequence of {num_columns} column name(s), got {_describe(names)}"
        ) from None
    if len(names) != num_columns:
        raise ValueError(
            f"{name} must hold one name per column of the data ({num_columns}), "
            f"got {len(names)}: {_describe(list(names))}"
        )
    return tuple(str(label) for label in names)


def _reads_as_number(value):
    """A real number (not a boolean), or text that reads as one."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _cell_description(data, index):
    """``row 2, column 1 ('b')`` for the cell at ``index`` of ``data``."""
    row = int(index[0])
    where = f"row {row}"
    row_labels = getattr(data, "index", None) if _is_pandas(data) else None
    if row_labels is not None and list(row_labels[: row + 1]) != list(range(row + 1)):
        where += f" (index {_describe(row_labels[row])})"
    if len(index) == 2:
        where += f", column {int(index[1])}"
        columns = getattr(data, "columns", None) if _is_pandas(data) else None
        if columns is not None:
            where += f" ({_describe(columns[int(index[1])])})"
    return where


def _non_numeric_message(data, array, name):
    """Why an array of text or objects is refused, naming its first cell that is not a number."""
    if array.ndim in (1, 2):
        for index, value in np.ndenumerate(array):
            if not _reads_as_number(value):
                value = value.item() if isinstance(value, np.generic) else value
                return (
                    f"{name} must hold real numbers; {_cell_description(data, index)} holds "
                    f"{_describe(value)} (an array of dtype {array.dtype})"
                )
        if array.size:
            return (
                f"{name} must hold real numbers, got an array of dtype {array.dtype} whose "
                "values read as numbers; convert it with np.asarray(data, dtype=float)"
            )
    return f"{name} must hold real numbers, got an array of dtype {array.dtype}"


def check_data(data: Any, *, name: str = "data", min_points: int = 2, dtype: Any = None) -> np.ndarray:
    """Validate observations and return them as a float array of shape (N,) or (N, D).

    Rejects non-numeric arrays (naming the first cell that is not a number:
    its row, its column and, for a pandas DataFrame, the column's name),
    complex and boolean arrays, NaN and inf (naming the first bad row), empty arrays, 0-d and >2-d arrays, and fewer than
    ``min_points`` points. Integer arrays are accepted and converted to
    floats. With ``dtype``, the result is converted to it, and values that
    overflow there (1e39 in float32) are refused, naming the first such row.

    All points may be identical: that is valid data (the priors' defaults
    then take their scale from the magnitude of the value, see
    :meth:`dpgmm_ppl.Priors.resolve`).
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
        raise TypeError(_non_numeric_message(data, array, name))
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
            row = _first_bad_row(~finite, array)
            raise ValueError(
                f"{name} must be finite; row {row} holds {array[row].tolist()}"
            )
    return array if dtype is None else _as_float_dtype(array, dtype, name)


def _column_sums_of_squares(array):
    """Sum of ``x**2`` down each column, in float64, one block of rows at a time."""
    total = np.zeros(array.shape[1:], np.float64)
    with np.errstate(over="ignore"):
        for start in range(0, array.shape[0], _SQUARES_BLOCK):
            block = array[start : start + _SQUARES_BLOCK].astype(np.float64)
            total = total + np.sum(block * block, axis=0)
    return total


def check_training_data(data: Any, *, name: str = "data") -> np.ndarray:
    """:func:`check_data`, in the working float dtype, and small enough to square there.

    The data are converted to float32 (float64 when JAX's x64 mode is on).
    The fit squares them in that precision: the k-means++ seeding sums the
    squared, uncentred values of the points of each cluster, and the seeding
    and the scale checks take the data's spread. So the sum of the squares of
    each column must stay below the largest float, with a factor
    ``_SQUARES_HEADROOM`` to spare for the cross terms of those sums.
    Beyond that (values of ±1e38, or an offset of 1e19 in float32) the fit
    would run to NaN; it is refused here instead, naming ``name``.

    Returns
    -------
    np.ndarray
        The data in the working dtype.
    """
    dtype = jax.numpy.result_type(float)
    array = check_data(data, name=name, dtype=dtype)
    limit = float(np.finfo(dtype).max) / _SQUARES_HEADROOM
    sums = np.atleast_1d(_column_sums_of_squares(array))
    too_large = np.flatnonzero(~(sums <= limit))
    if too_large.size:
        column = int(too_large[0])
        values = array if array.ndim == 1 else array[:, column]
        where = "the values" if array.ndim == 1 else f"column {column}"
        raise ValueError(
            f"{name} is too large to square in {np.dtype(dtype).name}: the squares of "
            f"{where} sum to {sums[column]:.3g} (largest magnitude "
            f"{float(np.max(np.abs(values))):.3g}), above the limit {limit:.3g}; "
            "centre and rescale the data (subtract the mean, divide by the standard deviation)"
        )
    return array


def check_batch_size(batch_size, num_points):
    """``None``, or a batch size no larger than the number of points."""
    if batch_size is not None and batch_size > num_points:
        raise ValueError(
            f"batch_size must be at most the number of points ({num_points}), got {batch_size}"
        )
    return batch_size


def _broadcasts_to(shape, target):
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def check_priors(priors, data, num_components):
    """``priors`` (default ``Priors()``), refusing other types and fields of the wrong shape.

    ``loc_mean``, ``loc_scale`` and ``scale_rate`` must be scalars or have one
    value per data dimension; ``fixed_scale`` may also give one per component.
    """
    if priors is None:
        return Priors()
    if not isinstance(priors, Priors):
        raise TypeError(
            f"priors must be a dpgmm_ppl.Priors, got {type(priors).__name__}"
        )
    event_shape = data.shape[1:]
    expected = "a scalar" + (f" or an array of shape {event_shape}" if event_shape else "")
    for field in _PRIOR_EVENT_FIELDS:
        shape = np.shape(getattr(priors, field))
        if getattr(priors, field) is not None and not _broadcasts_to(shape, event_shape):
            raise ValueError(
                f"priors.{field} must be {expected} for data of shape {data.shape}, "
                f"got shape {shape}"
            )
    fixed_shape = np.shape(priors.fixed_scale)
    full_shape = (num_components,) + event_shape
    if priors.fixed_scale is not None and not _broadcasts_to(fixed_shape, full_shape):
        raise ValueError(
            f"priors.fixed_scale must broadcast to (num_components,) + the data's event "
            f"shape, {full_shape}, got shape {fixed_shape}"
        )
    return priors


def check_covariance(covariance, data, priors):
    """``covariance`` as the name of the structure fitted to ``data``.

    The name must be registered (:data:`dpgmm_ppl.covariance.COVARIANCE_STRUCTURES`);
    scalar data get the structure each names for them (``"diag"``: with one
    scale per component the built-in structures are the same model), and
    ``Priors.fixed_scale`` is refused by a structure whose scales it cannot fix.
    """
    from dpgmm_ppl.covariance import check_fixed_scale, covariance_structure, structure_for

    structure = covariance_structure(covariance)
    if data.ndim == 1:
        return structure_for(structure, 0).name
    check_fixed_scale(structure, priors)
    return structure.name


def check_rng_key(rng_key):
    """Accept an int seed or a JAX PRNG key (raw uint32[2] or typed); return a raw key."""
    if isinstance(rng_key, (bool, np.bool_)):
        raise TypeError(f"rng_key must be an int or a jax PRNG key, got {rng_key!r}")
    if isinstance(rng_key, numbers.Integral):
        if not _SEED_RANGE[0] <= rng_key < _SEED_RANGE[1]:
            raise ValueError(
                f"rng_key must be an int seed in [-2**63, 2**63), got {rng_key}"
            )
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
