"""The parts of :class:`dpgmm_ppl.sklearn.DirichletProcessGMM` that need no scikit-learn.

Its parameters turned into the arguments of :func:`dpgmm_ppl.fit` (the
estimator's own rules here, the shared checks in :mod:`dpgmm_ppl.options`),
its convergence rule, and its point estimates of a fit.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.covariance import COVARIANCE_STRUCTURES, covariance_structure
from dpgmm_ppl.infer import BACKENDS, get_backend
from dpgmm_ppl.mixtures import covariance_matrices
from dpgmm_ppl.options import check_counts, resolve_options

__all__ = [
    "CONVERGENCE_TOL",
    "RESERVED_OPTIONS",
    "SUPPORTED_COVARIANCE_TYPES",
    "fit_arguments",
    "point_estimates",
    "tail_converged",
]

#: Tolerance of the convergence rule of the optimising backends (see ``converged_``).
CONVERGENCE_TOL = 1e-3

#: Covariance structures of the estimator: those of the model
#: (:data:`dpgmm_ppl.covariance.COVARIANCE_STRUCTURES`), sorted as scikit-learn
#: lists its names (``"tied"`` has no counterpart in the DP-GMM).
SUPPORTED_COVARIANCE_TYPES = tuple(sorted(COVARIANCE_STRUCTURES))

#: Arguments of :func:`dpgmm_ppl.fit` that the estimator sets from its own
#: parameters (named by the values); they may not appear in ``backend_options``.
RESERVED_OPTIONS = {
    "data": "X",
    "backend": "backend",
    "rng_key": "random_state",
    "num_components": "n_components",
    "num_chains": "n_chains",
    "priors": "priors",
    "covariance": "covariance_type",
}


def _given_options(backend_options: Any) -> dict:
    """``backend_options`` as a new dict, refusing the arguments the estimator sets."""
    if backend_options is None:
        return {}
    if not isinstance(backend_options, dict):
        raise TypeError(
            f"backend_options must be a dict or None, got {type(backend_options).__name__}"
        )
    reserved = sorted(set(backend_options) & set(RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"backend_options may not contain {reserved}: set them through the "
            f"estimator's parameter(s) {[RESERVED_OPTIONS[k] for k in reserved]}"
        )
    return dict(backend_options)


def _steps_from_max_iter(backend: str, options: dict, max_iter: Any) -> int:
    """scikit-learn's ``max_iter`` as the backend's ``num_steps``, for a backend that takes it."""
    max_iter = check_positive_int("max_iter", max_iter)
    if "num_steps" not in get_backend(backend).defaults:
        takers = [name for name, other in BACKENDS.items() if "num_steps" in other.defaults]
        raise ValueError(
            f"max_iter applies to the backends that take num_steps {takers}, not "
            f"{backend!r}; set the length of its run in backend_options instead "
            "(num_warmup and num_samples for 'nuts')"
        )
    if "num_steps" in options:
        raise ValueError(
            "max_iter and backend_options['num_steps'] both set the number of steps; "
            "give only one"
        )
    return max_iter


def fit_arguments(
    *,
    n_components: Any,
    covariance_type: Any,
    backend: Any,
    n_chains: Any,
    max_iter: Any,
    priors: Any,
    backend_options: Any,
) -> dict:
    """The keyword arguments of :func:`dpgmm_ppl.fit` for the estimator's parameters.

    The estimator's own rules (``covariance_type``, ``max_iter``, what
    ``backend_options`` may hold) are checked here, the rest by
    :mod:`dpgmm_ppl.options` as for :func:`dpgmm_ppl.fit` itself, naming
    the estimator's parameters; ``priors`` are checked by the fit.

    Examples
    --------
    >>> arguments = fit_arguments(n_components=4, covariance_type="full", backend="svi",
    ...                           n_chains=2, max_iter=500, priors=None, backend_options=None)
    >>> arguments["num_components"], arguments["covariance"], arguments["num_steps"]
    (4, 'full', 500)
    """
    num_components, num_chains = check_counts(
        n_components, n_chains, names={"num_components": "n_components", "num_chains": "n_chains"})
    if not isinstance(covariance_type, str) or covariance_type not in COVARIANCE_STRUCTURES:
        raise ValueError(
            f"covariance_type must be one of {list(SUPPORTED_COVARIANCE_TYPES)}, "
            f"got {covariance_type!r}"
        )
    get_backend(backend)
    options = _given_options(backend_options)
    if max_iter is not None:
        options["num_steps"] = _steps_from_max_iter(backend, options, max_iter)
    resolve_options(backend, options)
    return dict(backend=backend, num_components=num_components, num_chains=num_chains,
                priors=priors, covariance=covariance_type, **options)


def tail_converged(losses: Any, num_points: int, tol: float = CONVERGENCE_TOL) -> bool:
    """The convergence rule of ``converged_`` for one chain's losses.

    The last 10% of the steps (ten at least, or all of them) are split into
    an earlier and a later half. Converged: every loss is finite, and the
    mean loss of the later half differs from that of the earlier half by at most
    ``tol * max(|later mean|, num_points)`` plus three standard errors of
    that difference. The noise level behind the standard error is taken from
    the step-to-step differences of the loss, which a smooth descent keeps
    near zero and SVI's Monte-Carlo estimates of the ELBO do not.

    Examples
    --------
    >>> tail_converged(1000.0 + np.exp(-np.arange(200.0)), num_points=100)
    True
    >>> tail_converged(1000.0 - np.arange(200.0), num_points=100)
    False
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size < 2 or not np.all(np.isfinite(losses)):
        return False
    window = losses[-min(losses.size, max(10, math.ceil(0.1 * losses.size))) :]
    half = window.size // 2
    earlier, later = window[:half], window[window.size - half :]
    noise = np.std(np.diff(window)) / np.sqrt(2.0) if window.size > 2 else 0.0
    allowance = 3.0 * noise * np.sqrt(2.0 / half)
    change = abs(later.mean() - earlier.mean())
    return bool(change <= tol * max(abs(later.mean()), num_points) + allowance)


def point_estimates(result: Any, covariance_type: str, chain: Optional[int] = None):
    """``(weights, means, covariances)`` of one chain: the means over its draws.

    ``chain`` defaults to ``result.best_chain``. The weights are renormalised
    to sum to one; the covariances have the shapes of scikit-learn's
    ``GaussianMixture.covariances_`` for ``covariance_type``.
    """
    chain = result.best_chain if chain is None else chain
    samples = {name: np.asarray(value[chain], dtype=np.float64)
               for name, value in result.samples.items()}
    weights = samples["weights"].mean(axis=0)
    structure = covariance_structure(covariance_type)
    covariances = covariance_matrices(samples, structure).mean(axis=0)
    # In the structure's own shape, as scikit-learn's covariances_.
    return weights / weights.sum(), samples["loc"].mean(axis=0), structure.compact(covariances)
