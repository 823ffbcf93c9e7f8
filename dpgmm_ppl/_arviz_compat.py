"""The one place that knows which ArviZ line is installed.

ArviZ 0.x (Python 3.11 here) holds results in ``az.InferenceData``; ArviZ 1.x
(Python 3.12+) in an ``xarray.DataTree``. Both are built from the same
``xarray.Dataset`` groups, so the rest of the package never branches.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["arviz", "is_datatree", "make_inference_data", "read_groups", "write_netcdf"]


def arviz() -> ModuleType:
    """Import ArviZ lazily, without its 0.x notice about the coming refactor."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def is_datatree() -> bool:
    """True on ArviZ 1.x, where results are ``xarray.DataTree`` objects."""
    return int(arviz().__version__.split(".")[0]) >= 1


def make_inference_data(
    groups: Mapping[str, xr.Dataset], attrs: Mapping[str, Any] | None = None
) -> Any:
    """Wrap named ``xarray.Dataset`` groups in the installed ArviZ's container.

    Parameters
    ----------
    groups : dict of str to xarray.Dataset
        ``posterior``, ``sample_stats``, ``log_likelihood``, ... in ArviZ's names.
    attrs : dict, optional
        Attributes set on every group (key, version, options).

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
    """
    attrs = dict(attrs or {})
    for dataset in groups.values():
        dataset.attrs.update(attrs)
    if is_datatree():
        import xarray as xr

        tree = xr.DataTree.from_dict(dict(groups))
        tree.attrs.update(attrs)
        return tree
    return arviz().InferenceData(**groups)


def write_netcdf(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ArviZ data to ``path`` with h5netcdf (no pickling either way)."""
    if is_datatree():
        data.to_netcdf(path, engine="h5netcdf")
    else:
        data.to_netcdf(str(path), engine="h5netcdf")


def read_groups(path: str | os.PathLike[str]) -> dict[str, xr.Dataset]:
    """Read a netCDF file written by :func:`write_netcdf` into ``{group: Dataset}``."""
    import xarray as xr

    if is_datatree():
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            return {name: node.to_dataset().load() for name, node in tree.children.items()}
    data = arviz().from_netcdf(str(path), engine="h5netcdf")
    return {name: getattr(data, name).load() for name in data.groups()}
