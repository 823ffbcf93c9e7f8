"""Checks and helpers shared by the figure modules."""

from __future__ import annotations

import math

import numpy as np

from dpgmm_ppl._validation import check_names, check_positive_int
from dpgmm_ppl.mixtures import covariance_matrices
from dpgmm_ppl.result import Fit

#: Points of the grid on which densities are drawn.
GRID_SIZE = 500
#: The grid extends past the data by this fraction of the data's range on each side.
GRID_PAD = 0.1
#: Components a legend names at most; it counts the others in one last entry.
MAX_LEGEND_ENTRIES = 8
#: Draws whose marginal densities are summed at once (bounds the memory of a block).
_DRAW_BLOCK = 64


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


def density_axes(ax, data, bins, histtype="bar", xlabel="x"):
    heights = ax.hist(data, bins, density=True, histtype=histtype, color="0.8", label="data")[0]
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    return heights


def dimension_names(fit, names=None):
    """The names of the data's columns: ``names``, else ``fit.names``, else ``x[0]``, ``x[1]``, ...

    One name for scalar data (``"x"`` by default). Names of the wrong number
    are refused, naming the argument they came from.
    """
    width = 1 if fit.dim is None else fit.dim
    if names is not None:
        return check_names(names, width)
    checked = check_names(getattr(fit, "names", None), width, name="fit.names")
    if checked is not None:
        return checked
    return ("x",) if fit.dim is None else tuple(f"x[{j}]" for j in range(fit.dim))


def check_threshold(name, value):
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def mean_components(fit, chain):
    """Mean weights ``(K,)``, locations ``(K, D)`` and covariances ``(K, D, D)`` over one
    chain's draws (``chain``, default the best); scalar data count as ``D = 1``."""
    index = chain_index(fit, chain)
    samples = {name: np.asarray(value, np.float64)[index] for name, value in fit.samples.items()}
    weights = samples["weights"].mean(axis=0)
    if fit.dim is None:
        loc = samples["loc"].mean(axis=0)[:, None]
        covariances = (samples["scale"] ** 2).mean(axis=0)[:, None, None]
    else:
        loc = samples["loc"].mean(axis=0)
        covariances = covariance_matrices(samples, fit.covariance).mean(axis=0)
    return weights, loc, covariances


def marginal_density(fit, dim, grid, chain=None):
    """The predictive density of column ``dim`` alone on ``grid``, averaged over draws.

    The draws are those :meth:`~dpgmm_ppl.Fit.log_predictive_density`
    averages over: MAP's best restart unless ``chain`` is given, every draw
    of a posterior backend (or of ``chain``). Each draw's marginal is the
    one-dimensional mixture of the components' marginals.
    """
    selected = chain if chain is not None else (fit.best_chain if fit.is_point_estimate else None)
    samples = fit.samples if selected is None else {
        name: np.asarray(value)[[fit._check_chain(selected)]] for name, value in fit.samples.items()
    }
    weights = np.asarray(samples["weights"], np.float64).reshape(-1, fit.num_components)
    if fit.dim is None:
        loc = np.asarray(samples["loc"], np.float64).reshape(weights.shape)
        scale = np.asarray(samples["scale"], np.float64).reshape(weights.shape)
    else:
        flat = {name: np.asarray(value, np.float64).reshape((-1,) + np.shape(value)[2:])
                for name, value in samples.items()}
        loc = flat["loc"][..., dim]
        scale = np.sqrt(covariance_matrices(flat, fit.covariance)[..., dim, dim])
    total = np.zeros(len(grid))
    for start in range(0, weights.shape[0], _DRAW_BLOCK):
        block = slice(start, start + _DRAW_BLOCK)
        total += weighted_components(weights[block], loc[block], scale[block], grid).sum(axis=(0, 1))
    return total / weights.shape[0]


def component_legend(target, handles, weights, *, legend_threshold, extra=(), **options):
    """A legend of components that names the heavier ones and counts the rest.

    ``handles`` and ``weights`` are the drawn components, heaviest first.
    Those of weight at least ``legend_threshold`` are named (at most
    :data:`MAX_LEGEND_ENTRIES`); one last entry says how many drawn
    components it leaves out. ``extra`` (handle, label) pairs come first.
    ``target`` is an Axes or a Figure.
    """
    from matplotlib.lines import Line2D

    listed = [i for i, weight in enumerate(weights) if weight >= legend_threshold]
    listed = listed[:MAX_LEGEND_ENTRIES]
    entries = list(extra) + [(handles[i], handles[i].get_label()) for i in listed]
    left_out = len(weights) - len(listed)
    if left_out:
        is_capped = len(listed) == MAX_LEGEND_ENTRIES
        bound = f"<= {weights[listed[-1]]:.2g}" if is_capped else f"< {legend_threshold:.2g}"
        entries.append((Line2D([], [], linestyle="none"), f"+ {left_out} more drawn, weight {bound}"))
    if not entries:
        return None
    return target.legend(*zip(*entries), fontsize="small", **options)
