"""Inference backends; each is a :class:`~dpgmm_ppl.infer.base.Backend`."""

from dpgmm_ppl.infer.base import Backend, BackendOutput
from dpgmm_ppl.infer.map import MAP
from dpgmm_ppl.infer.nuts import NUTS
from dpgmm_ppl.infer.svi import SVI

__all__ = ["BACKENDS", "Backend", "BackendOutput"]

#: The backends :func:`dpgmm_ppl.fit` can run, by name.
BACKENDS = {backend.name: backend for backend in (MAP, SVI, NUTS)}
