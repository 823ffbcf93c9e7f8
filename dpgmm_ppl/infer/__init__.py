"""Inference backends; each is a :class:`~dpgmm_ppl.infer.base.Backend`."""

from __future__ import annotations

from dpgmm_ppl.infer.base import KINDS, Backend, BackendOutput
from dpgmm_ppl.infer.map import MAP
from dpgmm_ppl.infer.nuts import NUTS
from dpgmm_ppl.infer.svi import SVI

__all__ = ["BACKENDS", "KINDS", "Backend", "BackendOutput", "get_backend"]

#: The backends :func:`dpgmm_ppl.fit` can run, by name.
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (MAP, SVI, NUTS)}


def get_backend(name: str) -> Backend:
    """The registered backend called ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`BACKENDS`.

    Returns
    -------
    Backend

    Raises
    ------
    ValueError
        If no backend of that name is registered (the message lists those
        that are), or if the registered backend's ``kind`` is not one of
        :data:`~dpgmm_ppl.infer.base.KINDS`.

    Examples
    --------
    >>> get_backend("svi").kind
    'variational'
    >>> get_backend("hmc")
    Traceback (most recent call last):
    ...
    ValueError: backend must be one of ['map', 'nuts', 'svi'], got 'hmc'
    """
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {name!r}")
    backend = BACKENDS[name]
    if backend.kind not in KINDS:
        raise ValueError(
            f"backend {name!r} has kind {backend.kind!r}; a kind is one of {list(KINDS)}"
        )
    return backend
