"""One immutable result type for every backend.

Every array in a :class:`Fit` leads with ``(chain, draw)``: a MAP restart is a
chain with one draw, an SVI restart a chain whose draws come from its fitted
family, and a NUTS chain a chain. The same ArviZ tools then show
multimodality, and label switching, for all three.

The modules behind :meth:`Fit.to_arviz`, :meth:`Fit.save` and the other
methods that hand a fit on are imported inside them: they import this one.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, Optional

import numpy as np
from jax.scipy.special import logsumexp

from dpgmm_ppl import _display
from dpgmm_ppl._validation import check_data
from dpgmm_ppl.mixtures import (
    DensityBand,
    _flat_parameters,
    _hdi_bounds,
    _mean_responsibilities,
    _padded_points,
    mixture_log_density,
)
from dpgmm_ppl.priors import Priors

if TYPE_CHECKING:
    import os
    from pathlib import Path

    import jax
    from numpy.typing import ArrayLike

    from dpgmm_ppl.diagnostics import Diagnostics

__all__ = ["Fit"]


@dataclasses.dataclass(frozen=True, eq=False)
class Fit:
    """The result of :func:`dpgmm_ppl.fit`, the same for every backend.

    Attributes
    ----------
    backend : str
        The backend's name: ``"map"``, ``"svi"``, ``"nuts"`` or another
        registered one (:data:`dpgmm_ppl.infer.BACKENDS`).
    samples : dict of str to np.ndarray
        Constrained latent sites ``alpha``, ``weights``, ``loc``, ``scale``
        (and, for full covariances, ``corr_cholesky`` and ``scale_tril``),
        each of shape ``(chain, draw, ...)``. For MAP, ``draw`` has length 1.
    sample_stats : dict of str to np.ndarray
        Per-draw diagnostics, ``(chain, draw)``: ``lp`` (log density of the
        unconstrained position, the negative potential) and backend-specific
        ones in ArviZ's names.
    data : np.ndarray
        The training data.
    num_components : int
        Truncation level.
    priors : Priors
        The resolved priors.
    losses : np.ndarray or None
        Objective per step, ``(chain, step)``, for optimising backends.
    history : dict or None
        Constrained sites recorded during optimisation, ``(chain, frame, ...)``.
    history_steps : np.ndarray or None
        Step at which each history frame was recorded.
    timing : dict
        ``compile_seconds``: the wall time JAX spent tracing, lowering and
        compiling during the ``fit`` call (0 when an earlier fit of the same
        shape compiled everything); ``run_seconds``: the backend's run.
    options : dict
        The backend options used.
    rng_key : np.ndarray
        The key the fit was started from.
    permutations : np.ndarray or None
        Set by :func:`dpgmm_ppl.labels.relabel`: int array ``(chain, draw,
        num_components)`` such that component ``k`` of ``samples`` is component
        ``permutations[c, s, k]`` of the draw as the backend produced it
        (``new[k] = old[perm[k]]``). ``None`` for a fit that was never relabelled.
    covariance : str
        The covariance structure of the components: ``"diag"``,
        ``"spherical"`` or ``"full"`` (see :func:`~dpgmm_ppl.dpgmm`).
    names : tuple of str or None
        The names of the data's columns (one for scalar data), which the
        figures of :mod:`dpgmm_ppl.plots` put on their axes: a pandas
        DataFrame's columns (a Series' name) when :func:`dpgmm_ppl.fit` was
        given one, the CSV header for ``dpgmm-ppl fit``; ``None`` otherwise
        (the figures then say ``x[0]``, ``x[1]``, ...). Set them on any fit
        with ``dataclasses.replace(fit, names=("a", "b"))``.
    kind : str or None
        What the backend is (:data:`~dpgmm_ppl.infer.base.KINDS`):
        ``"optimum"``, ``"variational"`` or ``"sampler"``. By default the
        kind of the registered backend named ``backend``; ``None`` for a name
        that is not registered, which is then treated as a posterior of
        independent draws. :attr:`is_point_estimate` and :attr:`is_mcmc`
        ask about it.

    Examples
    --------
    ``repr`` is a short summary; the arrays are one attribute away.

    >>> import numpy as np
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.array([[[0.7, 0.3]]]),
    ...            "loc": np.zeros((1, 1, 2, 2)), "scale": np.ones((1, 1, 2, 2))}
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, np.zeros((5, 2)), 2, Priors(),
    ...           names=("height", "weight"))
    >>> print(repr(fit))  # doctest: +NORMALIZE_WHITESPACE
    Fit(backend='map', covariance='diag')
      chains x draws  1 x 1
      data            5 points x 2 columns: height, weight
      components      2 (truncation), 2 above 1% weight
      alpha           1
      samples         alpha, weights, loc, scale (.samples[name]: chain, draw, ...)
      sample_stats    lp
    """

    backend: str
    samples: dict
    sample_stats: dict
    data: np.ndarray
    num_components: int
    priors: Priors
    losses: Optional[np.ndarray] = None
    history: Optional[dict] = None
    history_steps: Optional[np.ndarray] = None
    timing: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)
    rng_key: Any = None
    permutations: Optional[np.ndarray] = None
    covariance: str = "diag"
    names: Optional[tuple] = None
    kind: Optional[str] = None

    def __post_init__(self):
        from dpgmm_ppl.infer import BACKENDS, KINDS

        if self.kind is None:
            registered = BACKENDS.get(self.backend) if isinstance(self.backend, str) else None
            object.__setattr__(self, "kind", None if registered is None else registered.kind)
        elif self.kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)} or None, got {self.kind!r}")

    @property
    def is_point_estimate(self) -> bool:
        """Whether each chain is one restart's optimum (kind ``"optimum"``).

        The best chain (:attr:`best_chain`) then stands for the fit, by
        default, rather than every chain pooled.
        """
        return self.kind == "optimum"

    @property
    def is_mcmc(self) -> bool:
        """Whether the chains are Markov chains (kind ``"sampler"``): trace
        plots, effective sample sizes and divergences apply."""
        return self.kind == "sampler"

    @property
    def num_chains(self) -> int:
        return int(np.shape(self.samples["alpha"])[0])

    @property
    def num_draws(self) -> int:
        return int(np.shape(self.samples["alpha"])[1])

    @property
    def dim(self) -> Optional[int]:
        """Dimension of an observation; ``None`` for scalar data."""
        return None if self.data.ndim == 1 else int(self.data.shape[1])

    @property
    def best_chain(self) -> int:
        """The chain (restart) with the best objective: for an optimum (MAP)
        the highest value of the objective it maximised
        (``sample_stats["objective"]``; ``log_joint``, then ``lp``, for fits
        made before it was recorded), the highest mean ``lp`` otherwise."""
        key = "lp"
        if self.is_point_estimate:
            key = next(
                (name for name in ("objective", "log_joint") if name in self.sample_stats), "lp"
            )
        return int(np.argmax(np.mean(self.sample_stats[key], axis=1)))

    def _summary_rows(self):
        """(field, value) rows of the short summary shown by ``repr`` and in notebooks."""
        best = None
        try:
            best = self.best_chain
        except (KeyError, ValueError, IndexError):  # a hand-made fit without the statistic
            pass
        draws = f"{self.num_chains} x {self.num_draws}"
        if best is not None and self.num_chains > 1:
            draws += f"; best chain {best}"
        data = f"{self.data.shape[0]} points"
        if self.dim is not None:
            data += f" x {self.dim} columns"
        if self.names:
            data += ": " + ", ".join(self.names)
        weights = np.asarray(self.samples["weights"])
        alpha = np.asarray(self.samples["alpha"], np.float64)
        if self.num_draws == 1:
            chain = 0 if best is None else best
            used = f"{int(np.sum(weights[chain, 0] > 0.01))} above 1% weight"
            alpha_text = f"{alpha[chain, 0]:.4g}"
        else:
            used = f"{np.mean(np.sum(weights > 0.01, axis=-1)):.1f} above 1% weight on average"
            alpha_text = f"mean {alpha.mean():.4g}, sd {alpha.std():.2g}"
        rows = [
            ("chains x draws", draws),
            ("data", data),
            ("components", f"{self.num_components} (truncation), {used}"),
            ("alpha", alpha_text),
            ("samples", ", ".join(self.samples) + " (.samples[name]: chain, draw, ...)"),
            ("sample_stats", ", ".join(self.sample_stats)),
        ]
        if self.losses is not None:
            rows.append(("losses", f"{np.shape(self.losses)} (chain, step)"))
        if self.permutations is not None:
            rows.append(("relabelled", "yes (permutations set)"))
        if "run_seconds" in self.timing:
            rows.append(("seconds", f"compile {self.timing.get('compile_seconds', 0.0):.1f}, "
                                    f"run {self.timing['run_seconds']:.1f}"))
        return rows

    def __repr__(self):
        header = f"Fit(backend={self.backend!r}, covariance={self.covariance!r})"
        return "\n".join([header, *_display.text_table(self._summary_rows())])

    def _repr_html_(self):
        caption = f"Fit: backend {self.backend!r}, covariance {self.covariance!r}"
        return _display.html_table(self._summary_rows(), caption=caption)

    def _check_points(self, x: Any, name: str = "x") -> np.ndarray:
        x = check_data(x, name=name, min_points=1, dtype=self.data.dtype)
        if (x.ndim == 1) != (self.data.ndim == 1) or x.shape[1:] != self.data.shape[1:]:
            expected = "(n,)" if self.dim is None else f"(n, {self.dim})"
            raise ValueError(
                f"{name} must have shape {expected} like the training data, got {x.shape}"
            )
        return x

    def _check_chain(self, chain) -> int:
        """``chain`` as a non-negative index, or a clear error; negative counts from the end."""
        if isinstance(chain, (bool, np.bool_)) or not isinstance(chain, (int, np.integer)):
            raise TypeError(f"chain must be an int or None, got {chain!r}")
        if not -self.num_chains <= chain < self.num_chains:
            raise ValueError(f"chain must be in [0, {self.num_chains}), got {chain}")
        return int(chain) % self.num_chains

    def _select(self, chain):
        if chain is None:
            return self.samples
        index = self._check_chain(chain)
        return {name: value[index : index + 1] for name, value in self.samples.items()}

    def log_predictive_density(self, x: ArrayLike, *, chain: int | None = None) -> np.ndarray:
        """Per-point log predictive density of new data.

        For MAP, the density of the restart with the best objective (or of
        ``chain``). For posterior backends, the density averaged over all draws
        (or over the draws of ``chain``): :math:`\\log \\frac1S \\sum_s p(x \\mid \\theta_s)`.

        Parameters
        ----------
        x : array of shape (n,) or (n, D)
            New points, of the training data's dimension.
        chain : int, optional
            Restrict to one chain (restart).

        Returns
        -------
        np.ndarray
            Shape ``(n,)``.
        """
        x = self._check_points(x)
        values = mixture_log_density(self._select(self._default_chain(chain)), x)
        flat = values.reshape(-1, values.shape[-1])
        return np.asarray(logsumexp(flat, axis=0) - np.log(flat.shape[0]))

    def _default_chain(self, chain):
        return self.best_chain if chain is None and self.is_point_estimate else chain

    def predictive_density(
        self, grid: ArrayLike, *, hdi_prob: float = 0.9, chain: int | None = None
    ) -> DensityBand:
        """Predictive density on a grid: mean over draws and an HDI band.

        Parameters
        ----------
        grid : array of shape (n,) or (n, D)
            Points to evaluate at.
        hdi_prob : float
            Probability mass of the band: at each grid point, the shortest
            interval holding this share of the per-draw densities.
        chain : int, optional
            Restrict to one chain; MAP uses its best restart by default.

        Returns
        -------
        DensityBand
            ``mean`` is ``exp(log_predictive_density(grid))``; for MAP the band
            collapses onto it.
        """
        if not isinstance(hdi_prob, (float, int)) or not 0 < hdi_prob < 1:
            raise ValueError(f"hdi_prob must be a float in (0, 1), got {hdi_prob!r}")
        grid = self._check_points(grid, name="grid")
        per_draw = np.exp(mixture_log_density(self._select(self._default_chain(chain)), grid))
        per_draw = per_draw.reshape(-1, grid.shape[0])
        lower, upper = _hdi_bounds(per_draw, hdi_prob)
        mean = np.exp(self.log_predictive_density(grid, chain=chain))
        return DensityBand(grid=grid, mean=mean, lower=lower, upper=upper)

    def cluster_probabilities(self, x: ArrayLike, *, chain: int | None = None) -> np.ndarray:
        """Per-point responsibilities ``p(component k | x_n)``, averaged over draws.

        Averaging over draws assumes the component labels mean the same thing
        in every draw; where they switch (see :mod:`dpgmm_ppl.labels`),
        relabel first or use label-invariant summaries.

        Returns
        -------
        np.ndarray
            Shape ``(n, num_components)``, rows summing to one.
        """
        x = self._check_points(x)
        samples = self._select(self._default_chain(chain))
        flat = _flat_parameters(samples)
        mean = _mean_responsibilities(*flat, _padded_points(x, flat[1].dtype))
        return np.asarray(mean)[: np.shape(x)[0]]

    def predict(self, x: ArrayLike, *, chain: int | None = None) -> np.ndarray:
        """The most probable component of each point, shape ``(n,)``."""
        return np.argmax(self.cluster_probabilities(x, chain=chain), axis=-1)

    def num_components_used(self, threshold: float = 0.01) -> np.ndarray:
        """Number of components whose weight exceeds ``threshold``, per draw: (chain, draw)."""
        if not isinstance(threshold, (float, int)) or not 0 <= threshold < 1:
            raise ValueError(f"threshold must be a float in [0, 1), got {threshold!r}")
        return np.sum(self.samples["weights"] > threshold, axis=-1)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fit to a netCDF file (see :func:`dpgmm_ppl.load`)."""
        from dpgmm_ppl.persistence import save

        return save(self, path)

    def to_arviz(
        self,
        *,
        log_likelihood: Literal["auto"] | bool = "auto",
        posterior_predictive: bool | dict[str, Any] = False,
    ) -> Any:
        """The fit as ArviZ data (``InferenceData`` on ArviZ 0.x, ``DataTree`` on 1.x).

        Groups: ``posterior`` (``alpha``, ``weights``, ``loc``, ``scale``, with
        a ``component`` dimension), ``sample_stats``, ``log_likelihood``
        (``obs``, pointwise), ``observed_data`` and, for optimising backends,
        ``optimization`` (the loss of every step and the parameter history);
        ``posterior_predictive`` when asked.

        Parameters
        ----------
        log_likelihood : {"auto", True, False}
            Whether to build the pointwise ``log_likelihood`` group (for
            ``az.loo``). ``"auto"`` builds it unless it would exceed
            :data:`~dpgmm_ppl.arviz_io.MAX_LOG_LIKELIHOOD_VALUES` values
            (chains x draws x points), and warns when it leaves it out.
        posterior_predictive : bool or dict
            ``True``: add a ``posterior_predictive`` group holding
            :meth:`posterior_predictive` at its defaults (one replicated data
            set per draw, ``rng_key=0``); or pass what that method returned
            (another key, ``num_samples``). Its ``obs`` has the dims of
            ``observed_data``'s after ``(chain, draw)``, so ``az.plot_ppc``
            (``az.plot_ppc_dist`` on ArviZ 1.x) works.
        """
        from dpgmm_ppl.arviz_io import fit_to_arviz

        return fit_to_arviz(
            self, log_likelihood=log_likelihood, posterior_predictive=posterior_predictive
        )

    def posterior_predictive(
        self, rng_key: jax.Array | int = 0, *, num_samples: int | None = None
    ) -> dict[str, np.ndarray]:
        """Replicated data sets of the training data's shape, from each draw's mixture.

        See :func:`dpgmm_ppl.predictive.posterior_predictive`; the same key
        gives the same replicates.

        Parameters
        ----------
        rng_key : int or PRNGKey
        num_samples : int, optional
            Replicates per chain; ``None`` is one per draw (see the function
            for fewer or more).

        Returns
        -------
        dict
            ``{"obs": array}``, shape ``(chain, num_samples) + data.shape``.
        """
        from dpgmm_ppl.predictive import posterior_predictive

        return posterior_predictive(self, rng_key, num_samples=num_samples)

    def diagnostics(self) -> Diagnostics:
        """Divergences, max R-hat and min bulk ESS of the label-invariant quantities.

        For NUTS also each chain's share of draws at the tree-depth bound.
        See :func:`dpgmm_ppl.diagnostics.diagnose` for the quantities
        (``alpha``, ``lp``, the log density at three data points), the
        thresholds and what the numbers mean for MAP and SVI restarts.

        Returns
        -------
        Diagnostics
        """
        from dpgmm_ppl.diagnostics import diagnose

        return diagnose(self)
