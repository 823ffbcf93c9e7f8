"""Reading data files and writing output files for the ``dpgmm-ppl`` command.

Every problem with an input file becomes one ``ValueError`` whose message
starts with the file's name and says what is wrong, so that the command can
print it as one line. Output files are written whole or not at all
(:func:`dpgmm_ppl.persistence.atomic_output`), and never over an existing
file unless asked.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np

__all__ = ["Table", "check_outputs_free", "load_table", "read_table", "write_text_atomic"]


class Table(NamedTuple):
    """Numbers read from a file.

    Attributes
    ----------
    values : np.ndarray
        Shape (N,) for one column, (N, D) otherwise; checked like
        :func:`dpgmm_ppl.fit`'s data (finite, real, 1-d or 2-d).
    columns : list of str or None
        The CSV columns the values come from; ``None`` for an NPY file.
    notes : list of str
        Things done without being asked (an index column left out), for stderr.
    """

    values: np.ndarray
    columns: Optional[list]
    notes: list


def read_table(path, columns=None, *, training=True):
    """Read a CSV file with a header row, or an NPY array, into a :class:`Table`.

    A CSV file is read as UTF-8 (a byte-order mark is skipped); blank lines
    are skipped. A first column with an empty name, which is what
    ``pandas.DataFrame.to_csv`` writes for the index unless
    ``index=False``, is left out with a note, unless ``columns`` names the
    columns to use. A first line of numbers is refused as a missing header,
    unless it reads ``0,1,...`` (pandas' names for the columns of a frame
    made from an array). An NPY file is read without unpickling
    (``allow_pickle=False``).

    Parameters
    ----------
    path : str or os.PathLike
        The file; ``.npy`` files are read as NPY, anything else as CSV.
    columns : list of str, optional
        CSV columns to use, in this order (default: all).
    training : bool
        Check the values as training data (at least two points, squares
        that fit the float type) rather than as held-out points (one is
        enough).

    Returns
    -------
    Table

    Raises
    ------
    ValueError
        One line naming the file: missing, empty, not UTF-8 text, no data
        row, a ragged or non-numeric row, a non-finite value, an unknown or
        repeated column, a pickled, 0-d or 3-d NPY array.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "frame.csv"
    >>> _ = path.write_text(",a,b\\n0,1.5,-2\\n1,2.5,-3\\n")  # pandas' to_csv, index included
    >>> table = read_table(path)
    >>> table.values.tolist(), table.columns
    ([[1.5, -2.0], [2.5, -3.0]], ['a', 'b'])
    """
    from dpgmm_ppl._validation import check_data, check_training_data

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    if path.suffix.lower() == ".npy":
        if columns:
            raise ValueError(f"{path}: --columns applies to CSV files only, not to NPY arrays")
        values, names, notes = _read_npy(path), None, []
    else:
        values, names, notes = _read_csv(path, columns)
    try:
        if training:
            values = check_training_data(values, name="the data")
        else:
            values = check_data(values, name="the data", min_points=1)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: {error}") from None
    return Table(values, names, notes)


def load_table(path, columns=None):
    """The values of :func:`read_table`, as a float array of shape (N,) or (N, D)."""
    return read_table(path, columns).values


def _read_npy(path):
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: not a plain numeric NPY array ({error})") from None
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: not a readable NPY file ({error})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise ValueError(f"{path}: an NPZ archive, not one NPY array; save one array with np.save")
    # One column is 1-d data, as a one-column CSV file is (the density plots need that shape).
    return array[:, 0] if array.ndim == 2 and array.shape[1] == 1 else array


def _csv_rows(path):
    """``(line number, fields)`` of every non-blank line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            return [(reader.line_num, row) for row in reader if any(f.strip() for f in row)]
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: not a UTF-8 text file; expected a CSV file or an .npy array"
        ) from None
    except csv.Error as error:
        raise ValueError(f"{path}: not a readable CSV file ({error})") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from None


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pick_columns(path, header, columns):
    """Indices of the columns to read, and a note if an index column was left out."""
    if columns:
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}; the header has {header}")
        repeated = [name for name in columns if header.count(name) > 1]
        if repeated:
            raise ValueError(f"{path}: the header names column {repeated[0]!r} more than once")
        return [header.index(name) for name in columns], None
    wanted = list(range(len(header)))
    if len(header) > 1 and header[0] == "":
        return wanted[1:], (
            f"note: {path}: the unnamed first column is taken for a row index (as "
            "pandas' to_csv writes it) and left out; name the columns with --columns "
            "to choose others"
        )
    return wanted, None


def _read_csv(path, columns):
    rows = _csv_rows(path)
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header row and at least one data row")
    header = [name.strip() for name in rows[0][1]]
    # pandas names the columns of a frame built from an array 0, 1, ...: names,
    # not a first row of data.
    pandas_names = [str(j) for j in range(len(header))]
    if all(_is_number(name) for name in header) and header != pandas_names:
        raise ValueError(
            f"{path}: the first line holds numbers, not column names; add a header row"
        )
    wanted, note = _pick_columns(path, header, columns)
    values = np.empty((len(rows) - 1, len(wanted)))
    for i, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
            )
        for j, column in enumerate(wanted):
            try:
                values[i, j] = float(row[column])
            except ValueError:
                raise ValueError(
                    f"{path}: line {line} holds a non-numeric value {row[column]!r} "
                    f"in column {header[column]!r}"
                ) from None
            if not math.isfinite(values[i, j]):
                raise ValueError(f"{path}: line {line} holds a non-finite value (nan or inf)")
    names = [header[j] for j in wanted]
    return (values[:, 0] if len(wanted) == 1 else values), names, [note] if note else []


def check_outputs_free(paths, *, force):
    """Refuse to write over existing files unless ``force``; refuse directories always."""
    for path in paths:
        if path.is_dir():
            raise ValueError(f"{path} is a directory; the output needs this name for a file")
        if path.exists() and not force:
            raise ValueError(f"{path} already exists; pass --force to overwrite it")


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` whole or not at all; return ``path``."""
    from dpgmm_ppl.persistence import atomic_output

    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
