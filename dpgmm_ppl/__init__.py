"""Dirichlet-process Gaussian mixtures in NumPyro.

A NumPyro model of the truncated stick-breaking DP-GMM (:func:`dpgmm`), one
shared log-density, and backends (MAP, ...) that return one :class:`Fit` type
with ArviZ output.
"""

__version__ = "0.1.0"

from dpgmm_ppl.api import fit
from dpgmm_ppl.compare import Comparison, compare
from dpgmm_ppl.density import LogDensity, build_log_density
from dpgmm_ppl.distributions import GaussianMixture, StickBreakingWeights
from dpgmm_ppl.fit import Fit
from dpgmm_ppl.model import dpgmm
from dpgmm_ppl.persistence import load
from dpgmm_ppl.priors import Priors

__all__ = [
    "Comparison",
    "Fit",
    "GaussianMixture",
    "LogDensity",
    "Priors",
    "StickBreakingWeights",
    "__version__",
    "build_log_density",
    "compare",
    "dpgmm",
    "fit",
    "load",
]
