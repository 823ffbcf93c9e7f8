"""Checks and helpers shared by the figure modules."""

from __future__ import annotations

import math

import numpy as np

from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.fit import Fit

#: Points of the grid on which densities are drawn.
GRID_SIZE = 500
#: The grid extends past the data by this fraction of the data's range on each side.
GRID_PAD = 0.1


def check_fit(fit, *, bins=1, component_threshold=0.0):
    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a dpgmm_ppl.Fit, got {type(fit).__name__}")
    check_positive_int("bins", bins)
    if not 0.0 <= component_threshold < 1.0:
        raise ValueError(f"component_threshold must be in [0, 1), got {component_threshold!r}")


def data_1d(fit, data):
    data = fit.data if data is None else np.asarray(data)
    if fit.dim is not None or data.ndim != 1:
        shape = fit.data.shape if fit.dim is not None else data.shape
        raise ValueError(f"density plots need 1-d data of shape (N,), got shape {shape}")
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ValueError("data must be a non-empty array of finite numbers")
    return data


def chain_index(fit, chain):
    """``chain`` as a non-negative index; ``None`` means the best chain."""
    return fit.best_chain if chain is None else fit._check_chain(chain)


def density_grid(data):
    low, high = float(np.min(data)), float(np.max(data))
    pad = GRID_PAD * (high - low) if high > low else 1.0
    return np.linspace(low - pad, high + pad, GRID_SIZE)


def weighted_components(weights, loc, scale, grid):
    """:math:`w_k \\mathcal{N}(x \\mid \\mu_k, \\sigma_k)` on ``grid``: shape ``(..., K, G)``."""
    weights, loc, scale = (np.asarray(a, np.float64)[..., None] for a in (weights, loc, scale))
    z = (grid - loc) / scale
    return weights * np.exp(-0.5 * z**2) / (scale * math.sqrt(2.0 * math.pi))


def density_axes(ax, data, bins, histtype="bar"):
    heights = ax.hist(data, bins, density=True, histtype=histtype, color="0.8", label="data")[0]
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    return heights
