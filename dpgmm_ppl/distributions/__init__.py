"""NumPyro distributions for truncated Dirichlet-process mixtures.

Two distributions that can be used in any NumPyro model:

- :class:`StickBreakingWeights`, the truncated GEM (stick-breaking) prior on
  the probability simplex (module ``_stick_breaking``, with the maps between
  stick fractions and weights);
- :class:`GaussianMixture`, a Gaussian mixture likelihood with the component
  labels summed out (module ``_gaussian_mixture``).

Both work in log space (module ``_log_space``), so that float32 never
produces a negative weight, a weight that is NaN, or a ``log(0)`` inside a
gradient. Import them from here: the modules they live in are not part of
the interface.
"""

from __future__ import annotations

from dpgmm_ppl.distributions._gaussian_mixture import GaussianMixture

# Not public: density.py and reparam.py take their logs of weights with it too.
from dpgmm_ppl.distributions._log_space import _safe_log
from dpgmm_ppl.distributions._stick_breaking import (
    LogSpaceStickBreakingTransform,
    StickBreakingWeights,
    log_stick_breaking,
    stick_breaking,
    sticks_from_weights,
)

__all__ = [
    "StickBreakingWeights",
    "GaussianMixture",
    "stick_breaking",
    "log_stick_breaking",
    "sticks_from_weights",
]
