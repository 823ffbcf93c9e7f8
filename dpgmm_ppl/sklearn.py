"""A scikit-learn estimator around :func:`dpgmm_ppl.fit`.

:class:`DirichletProcessGMM` follows scikit-learn's estimator contract
(parameters stored by ``__init__``, input validated by scikit-learn, fitted
attributes ending in ``_``), so the DP-GMM drops into a ``Pipeline``, a
``GridSearchCV`` scored by the held-out log density, or ``clone``. The
underlying :class:`~dpgmm_ppl.Fit` stays available as ``fit_`` for ArviZ and
the label-switching tools of :mod:`dpgmm_ppl.labels`.

scikit-learn is an optional dependency (the ``sklearn`` extra): this module
imports it, ``import dpgmm_ppl`` does not.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    from sklearn.base import BaseEstimator, DensityMixin
    from sklearn.utils import check_random_state
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "dpgmm_ppl.sklearn needs scikit-learn: pip install 'dpgmm-ppl[sklearn]'"
    ) from error

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sklearn_validate_data = None

from dpgmm_ppl._estimator import (
    CONVERGENCE_TOL,
    SUPPORTED_COVARIANCE_TYPES,
    fit_arguments,
    point_estimates,
    tail_converged,
)
from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.api import fit as _fit_dpgmm

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from dpgmm_ppl.priors import Priors

__all__ = ["CONVERGENCE_TOL", "SUPPORTED_COVARIANCE_TYPES", "DirichletProcessGMM"]


def _validate_X(estimator: BaseEstimator, X: ArrayLike, *, reset: bool) -> np.ndarray:
    """``X`` checked by scikit-learn: a finite 2-D float array, two rows or more to fit."""
    options = dict(
        reset=reset,
        dtype=[np.float64, np.float32],
        ensure_min_samples=2 if reset else 1,
    )
    if _sklearn_validate_data is not None:
        return _sklearn_validate_data(estimator, X, **options)
    return estimator._validate_data(X, **options)  # pragma: no cover - older scikit-learn


class DirichletProcessGMM(DensityMixin, BaseEstimator):
    """Dirichlet-process Gaussian mixture fitted by :func:`dpgmm_ppl.fit`.

    A truncated stick-breaking DP-GMM, fitted by
    MAP (gradient descent to the posterior mode), SVI (a Gaussian family on
    the unconstrained space) or NUTS, behind scikit-learn's estimator API.
    ``score`` is the mean log predictive density, so ``GridSearchCV`` with its
    default scoring compares models by held-out density.

    Parameters
    ----------
    n_components : int, default=25
        Truncation level of the stick-breaking prior: an upper bound on the
        number of clusters. The fit leaves the weights of unneeded components
        near zero.
    covariance_type : {"diag", "full", "spherical"}, default="diag"
        Structure of each component's covariance (the ``covariance`` of
        :func:`dpgmm_ppl.fit`): one variance per component and feature,
        a full covariance matrix per component (an LKJ prior on its
        correlations), or one variance per component. ``"tied"`` has no
        counterpart here; it and any other value raise ``ValueError`` at
        fit time.
    backend : {"map", "svi", "nuts"}, default="map"
        The inference backend of :func:`dpgmm_ppl.fit`.
    n_chains : int, default=1
        Independent restarts (MAP) or chains (SVI, NUTS).
    max_iter : int or None, default=None
        Optimisation steps (``num_steps``) for ``"map"`` and ``"svi"``;
        ``None`` keeps the backend's default (10,000 for MAP). Not used by
        ``"nuts"`` (``ValueError`` if set): give ``num_warmup`` and
        ``num_samples`` in ``backend_options`` instead.
    random_state : int, RandomState instance or None, default=None
        Seeds the fit and :meth:`sample`. An int is used as the fit's seed
        as it is (the fit equals ``dpgmm_ppl.fit(X, rng_key=random_state,
        ...)``); a ``RandomState`` or ``None`` (NumPy's global state) gives
        a seed drawn from it.
    priors : dpgmm_ppl.Priors or None, default=None
        Hyperparameters; ``None`` scales the defaults from the data.
    backend_options : dict or None, default=None
        Further keyword options of the backend (see :func:`dpgmm_ppl.fit`),
        for example ``{"num_steps": 2000}`` or ``{"num_warmup": 300,
        "num_samples": 300}``.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        Mixture weights.
    means_ : ndarray of shape (n_components, n_features)
        Component means.
    covariances_ : ndarray
        The covariance of each component, shaped as in scikit-learn's
        ``GaussianMixture``: ``(n_components, n_features)`` per-feature
        variances for ``"diag"``, ``(n_components, n_features, n_features)``
        matrices for ``"full"``, ``(n_components,)`` variances for
        ``"spherical"``. Posterior backends: the mean over the draws.
    converged_ : bool
        MAP and SVI: every loss of the chain the estimates come from is
        finite, and the mean loss over the last 5% of the steps (five at
        least) differs from the mean over as many steps before them by at
        most :data:`CONVERGENCE_TOL` (1e-3) times the larger of the
        magnitude of the loss and ``n_samples`` (the floor keeps a loss near
        zero from making every change look large), plus three standard
        errors of that difference
        (the noise of SVI's Monte-Carlo loss, estimated from its step-to-step
        differences; close to zero for MAP). It reports, it does not stop
        the optimisation: raise ``max_iter`` when it is False. NUTS: no
        transition after warmup diverged, in any chain.
    n_iter_ : int
        Optimisation steps per chain (MAP, SVI) or warmup plus sampling
        iterations per chain (NUTS).
    lower_bound_ : float
        MAP: the objective of the best restart at its last step
        (:mod:`dpgmm_ppl.infer.map`) divided by ``n_samples``; SVI: minus the final loss (the ELBO) divided by
        ``n_samples``. Not set for NUTS.
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when ``X`` has string column names.
    fit_ : dpgmm_ppl.Fit
        The full result, with every chain and draw (``fit_.to_arviz()``);
        its ``names`` are ``feature_names_in_`` where set, for the figures of
        :mod:`dpgmm_ppl.plots`.

    Notes
    -----
    Where the point estimates come from. MAP: the restart with the highest
    log joint density (``fit_.best_chain``). SVI and NUTS: the posterior
    mean over the draws of the chain with the highest mean log density
    (``fit_.best_chain``). A mixture's components can swap labels between
    draws (label switching), which blurs such means towards each other;
    undo it with :func:`dpgmm_ppl.labels.relabel` on ``fit_`` and summarise
    the relabelled draws when that matters. Chains are never averaged
    together, since each settles on its own labelling.

    :meth:`predict_proba` and :meth:`predict` average the responsibilities
    over the draws of that same chain, so their labels are those of
    ``weights_`` and ``means_``. :meth:`score_samples` is the log predictive
    density of ``fit_``: MAP's best restart, or for SVI and NUTS the average
    of the densities of every draw of every chain (label-free). :meth:`sample`
    draws from the mixture of the point estimates.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl.sklearn import DirichletProcessGMM
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-5, 1, (100, 2)), rng.normal(5, 1, (100, 2))])
    >>> gmm = DirichletProcessGMM(n_components=4, max_iter=1000, random_state=0).fit(X)
    >>> labels = gmm.predict(X)
    >>> set(labels[:100]) & set(labels[100:])  # no component spans both groups
    set()
    >>> sorted(np.round(gmm.means_[gmm.weights_ > 0.2]).tolist())
    [[-5.0, -5.0], [5.0, 5.0]]
    >>> X_new, y_new = gmm.sample(5)
    >>> X_new.shape, y_new.shape
    ((5, 2), (5,))
    """

    def __init__(
        self,
        n_components: int = 25,
        *,
        covariance_type: str = "diag",
        backend: str = "map",
        n_chains: int = 1,
        max_iter: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        priors: Priors | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.backend = backend
        self.n_chains = n_chains
        self.max_iter = max_iter
        self.random_state = random_state
        self.priors = priors
        self.backend_options = backend_options

    # -- parameters --------------------------------------------------------

    def _fit_arguments(self):
        """The keyword arguments for :func:`dpgmm_ppl.fit`, every parameter checked."""
        params = self.get_params(deep=False)
        params.pop("random_state")
        return fit_arguments(**params)

    def _seed(self):
        """The fit's integer seed from ``random_state``."""
        try:
            state = check_random_state(self.random_state)
        except ValueError:
            raise ValueError(
                "random_state must be None, an int in [0, 2**32) or a "
                f"numpy.random.RandomState, got {self.random_state!r}"
            ) from None
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(state.randint(np.iinfo(np.int32).max))

    # -- fitting -----------------------------------------------------------

    def fit(self, X: ArrayLike, y: object = None) -> DirichletProcessGMM:
        """Fit the DP-GMM to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, at least two samples.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : DirichletProcessGMM
            The fitted estimator.
        """
        arguments = self._fit_arguments()
        points = _validate_X(self, X, reset=True)
        result = _fit_dpgmm(points, rng_key=self._seed(), **arguments)
        self._set_fitted_attributes(result, points.shape[0])
        return self

    def _set_fitted_attributes(self, result, num_points):
        chain = result.best_chain
        self.weights_, self.means_, self.covariances_ = point_estimates(
            result, self.covariance_type, chain)
        self.__dict__.pop("lower_bound_", None)
        if result.is_mcmc:
            self.converged_ = not bool(np.any(result.sample_stats.get("diverging", False)))
            self.n_iter_ = int(result.options.get("num_warmup", 0) + result.num_draws)
        else:
            losses = result.losses[chain]
            self.converged_ = tail_converged(losses, num_points)
            self.n_iter_ = int(losses.shape[0])
            # Minus the last value of the objective the fit minimised (MAP's
            # log density at its mode, SVI's negative ELBO), per point.
            self.lower_bound_ = -float(losses[-1]) / num_points
        names = getattr(self, "feature_names_in_", None)
        self.fit_ = result if names is None else dataclasses.replace(
            result, names=tuple(str(name) for name in names))

    def fit_predict(self, X: ArrayLike, y: object = None) -> np.ndarray:
        """Fit the model to ``X`` and return the component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component indices, as from :meth:`predict`.
        """
        return self.fit(X).predict(X)

    # -- prediction --------------------------------------------------------

    def _points(self, X: ArrayLike) -> np.ndarray:
        check_is_fitted(self)
        return _validate_X(self, X, reset=False)

    def _label_chain(self):
        """The chain whose labelling the point estimates and responsibilities use."""
        return self.fit_.best_chain

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior probability of each component for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_components)
            Responsibilities, averaged over the draws of the chain that
            ``weights_`` and ``means_`` come from; rows sum to one.
        """
        X = self._points(X)
        proba = self.fit_.cluster_probabilities(X, chain=self._label_chain())
        return np.asarray(proba, dtype=np.float64)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Component indices in ``[0, n_components)``.
        """
        return np.argmax(self.predict_proba(X), axis=1)

    def score_samples(self, X: ArrayLike) -> np.ndarray:
        """Log predictive density of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points.

        Returns
        -------
        log_density : ndarray of shape (n_samples,)
            ``fit_.log_predictive_density(X)``: the density of MAP's best
            restart, or the density averaged over every draw of every chain
            for SVI and NUTS.
        """
        X = self._points(X)
        return np.asarray(self.fit_.log_predictive_density(X), dtype=np.float64)

    def score(self, X: ArrayLike, y: object = None) -> float:
        """Mean log predictive density of the samples (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points.
        y : None
            Ignored.

        Returns
        -------
        score : float
            The mean of :meth:`score_samples`.
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        Components are drawn with probabilities ``weights_``, then each
        point from the Gaussian with that component's ``means_`` and
        ``covariances_``, using ``random_state``.

        Parameters
        ----------
        n_samples : int, default=1
            Number of points.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            The points.
        y : ndarray of shape (n_samples,)
            The component of each point.
        """
        check_is_fitted(self)
        n_samples = check_positive_int("n_samples", n_samples)
        rng = check_random_state(self.random_state)
        labels = rng.choice(self.weights_.shape[0], size=n_samples, p=self.weights_)
        noise = rng.standard_normal((n_samples, self.means_.shape[1]))
        if self.covariance_type == "full":
            factors = np.linalg.cholesky(self.covariances_)
            offsets = np.einsum("nij,nj->ni", factors[labels], noise)
        elif self.covariance_type == "spherical":
            offsets = noise * np.sqrt(self.covariances_[labels])[:, None]
        else:
            offsets = noise * np.sqrt(self.covariances_[labels])
        return self.means_[labels] + offsets, labels
