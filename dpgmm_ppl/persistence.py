"""Saving and loading fits as netCDF: every group, no pickling.

A fit is written as its ArviZ groups (``posterior``, ``sample_stats``,
``log_likelihood``, ``observed_data`` and, for optimisers, ``optimization``)
plus attributes recording the package version, backend, key, options and
priors, so that :func:`load` rebuilds the same :class:`~dpgmm_ppl.Fit`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from dpgmm_ppl._arviz_compat import read_groups, write_netcdf
from dpgmm_ppl.arviz_io import FORMAT_VERSION, PERMUTATION_STAT
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.result import Fit

__all__ = ["atomic_output", "load", "save"]


# The umask can only be read by setting it; done once, at import, rather than
# flipped on every write while other threads may be creating files.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _check_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path whose directory exists, or a clear error."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"path {str(path)!r}: the directory {str(path.parent)!r} does not exist"
        )
    if path.is_dir():
        raise IsADirectoryError(f"path {str(path)!r} is a directory, not a file name")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write a file all at once: yield a temporary path beside ``path``, then rename it.

    The caller writes the whole file to the yielded path. When the block
    ends normally the file is flushed to disk and moved onto ``path`` with
    :func:`os.replace` (atomic within a file system), so that ``path`` holds
    either its earlier content or the complete new file, never a part of it.
    When the block raises anything, ``KeyboardInterrupt`` included, the
    temporary file is removed and ``path`` is left as it was. The temporary
    name is hidden (``.name.<random>.tmp.ext``) and keeps the extension, for
    writers that pick the format from it.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist.

    Yields
    ------
    pathlib.Path
        The temporary file, empty, in the same directory.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_output(folder / "note.txt") as temporary:
    ...     _ = temporary.write_text("written whole")
    >>> (folder / "note.txt").read_text(), [p.name for p in folder.iterdir()]
    ('written whole', ['note.txt'])
    """
    path = _check_target(path)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix
    )
    temporary = Path(name)
    try:
        os.close(handle)
        yield temporary
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        # mkstemp makes the file readable by its owner only; give it the
        # permissions any new file gets under the process's umask.
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def save(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` to ``path`` (netCDF), atomically: a temporary file, then a rename.

    An interrupted or failed write leaves no partial file, and no temporary
    one (:func:`atomic_output`); an existing file at ``path`` is replaced
    only by the complete new one. In a multi-process run (every process
    holding the same fit) only process 0 writes. A fit of data spread over
    processes is saved without its data, which :func:`load` gives back as
    NaN of their shape.

    Returns
    -------
    pathlib.Path
    """
    path = _check_target(path)
    import jax

    if jax.process_index() != 0:
        # Every process of a multi-process run holds the same fit: process 0 writes it.
        return path
    with atomic_output(path) as temporary:
        write_netcdf(fit.to_arviz(), temporary)
    return path


def _priors_from(text):
    fields = json.loads(text)
    return Priors(**{
        name: (value if not isinstance(value, list) else np.asarray(value, np.float32))
        for name, value in fields.items()
    })


#: The first bytes of every HDF5 file, hence of every netCDF-4 file :func:`save` writes.
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_path(path):
    """``path`` as a Path to an existing HDF5 (netCDF-4) file, or a clear error."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        signature = handle.read(len(_HDF5_SIGNATURE))
    if signature != _HDF5_SIGNATURE:
        raise ValueError(
            f"path {str(path)!r} is not a netCDF-4 file (no HDF5 signature): "
            "not a fit written by Fit.save"
        )
    return path


def _data_from(groups, attrs):
    """The observed data, or, for a fit of data spread over processes, which
    kept none, NaN of their shape and dtype (a view of one value)."""
    if "observed_data" in groups:
        return groups["observed_data"]["obs"].values
    from dpgmm_ppl.sharding import spread_rows

    return spread_rows(json.loads(attrs["data_shape"]), attrs.get("data_dtype", "float32"))


def load(path: str | os.PathLike[str]) -> Fit:
    """Read a fit written by :meth:`Fit.save <dpgmm_ppl.Fit.save>`.

    Raises
    ------
    TypeError
        If ``path`` is not a str or path-like object.
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not netCDF-4, was not written by dpgmm_ppl, or was
        written in a newer, incompatible layout.
    """
    path = _check_path(path)
    groups = read_groups(path)
    if "posterior" not in groups:
        raise ValueError(f"{str(path)!r} holds no posterior group: not a dpgmm_ppl fit")
    attrs = groups["posterior"].attrs
    if attrs.get("inference_library") != "dpgmm_ppl":
        raise ValueError(f"{str(path)!r} was not written by dpgmm_ppl")
    version = int(attrs.get("dpgmm_ppl_format", -1))
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} uses saved-fit layout {version}, written by dpgmm_ppl "
            f"{attrs.get('inference_library_version')}; this version reads layout {FORMAT_VERSION}"
        )
    posterior = groups["posterior"]
    sample_stats = {name: value.values for name, value in groups["sample_stats"].items()}
    permutations = sample_stats.pop(PERMUTATION_STAT, None)
    rng_key = json.loads(attrs["rng_key"])  # "null" for a fit made without a key
    optimization = groups.get("optimization")
    history = None
    if optimization is not None:
        history = {
            name: optimization[f"{name}_history"].values
            for name in posterior.data_vars
            if f"{name}_history" in optimization
        }
    return Fit(
        backend=str(attrs["backend"]),
        samples={name: posterior[name].values for name in posterior.data_vars},
        sample_stats=sample_stats,
        data=_data_from(groups, attrs),
        num_components=int(attrs["num_components"]),
        # Files written before the covariance structures existed are diagonal.
        covariance=str(attrs.get("covariance", "diag")),
        priors=_priors_from(attrs["priors"]),
        losses=None if optimization is None else optimization["loss"].values,
        history=history or None,
        history_steps=None
        if optimization is None or "frame" not in optimization.coords
        else optimization["frame"].values,
        timing=json.loads(attrs["timing"]),
        options=json.loads(attrs["options"]),
        rng_key=None if rng_key is None else np.asarray(rng_key, np.uint32),
        permutations=None if permutations is None else permutations.astype(np.int64),
        # Files written before the names were kept have none.
        names=_names_from(attrs.get("names", "null")),
        # Files written before the kind was kept: the registered backend's.
        kind=attrs.get("backend_kind"),
    )


def _names_from(text):
    names = json.loads(text)
    return None if names is None else tuple(str(name) for name in names)
