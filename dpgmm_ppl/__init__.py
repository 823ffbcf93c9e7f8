"""Dirichlet-process Gaussian mixtures in NumPyro.

A NumPyro model of the truncated stick-breaking DP-GMM (:func:`dpgmm`), one
shared log-density, and backends (MAP, SVI, NUTS) that return one :class:`Fit`
type with ArviZ output; :class:`DirichletProcessGMM` wraps them as a
scikit-learn estimator (with the optional ``dpgmm-ppl[sklearn]``).
"""

__version__ = "0.1.0"

# Under ``python -m dpgmm_ppl.launch`` (or DPGMM_PPL_DISTRIBUTED=1 on a
# cluster), join the other processes before anything else touches JAX.
from dpgmm_ppl._distributed import initialize_distributed as _initialize_distributed

_initialize_distributed()

from dpgmm_ppl.api import fit
from dpgmm_ppl.compare import Comparison, compare
from dpgmm_ppl.density import LogDensity, build_log_density
from dpgmm_ppl.diagnostics import Diagnostics
from dpgmm_ppl.distributions import GaussianMixture, StickBreakingWeights
from dpgmm_ppl.model import dpgmm
from dpgmm_ppl.persistence import load
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.result import Fit

__all__ = [
    "Comparison",
    "Diagnostics",
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


def __getattr__(name):
    # The scikit-learn estimator is imported on first use, so that importing
    # the package does not need scikit-learn (an optional dependency).
    if name == "DirichletProcessGMM":
        from dpgmm_ppl.sklearn import DirichletProcessGMM

        return DirichletProcessGMM
    raise AttributeError(f"module 'dpgmm_ppl' has no attribute {name!r}")
