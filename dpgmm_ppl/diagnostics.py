"""Convergence diagnostics of a fit, on quantities the component labels do not change.

:func:`diagnose` (``Fit.diagnostics()``) reports, per fit, the divergent
transitions after warmup, the largest R-hat and the smallest bulk effective
sample size (ESS) over a few scalar quantities of every draw: ``alpha``,
``lp`` and the log density of the draw's mixture at three points of the data
(:func:`diagnostic_points`). Per-component sites are left out on purpose:
chains that found the same mixture under other labels would fail R-hat
there without any sampling problem (see :mod:`dpgmm_ppl.labels`).

A NUTS chain whose trees reach ``max_tree_depth`` in more than
:data:`MAX_TREEDEPTH_SHARE` of its draws is reported as slow. On its own
that costs time, not correctness; but one such chain among quick ones has
usually ended its warmup somewhere the others are not (on the seed data: a
spare component holding 1 to 3% of the points, or the largest cluster split
in two), adapted a step size a tenth of theirs, and stays there; its R-hat
shows it only when the quantities watched differ between the two places.

R-hat is ArviZ's rank-normalised split R-hat (``method="rank"``) and ESS its
bulk ESS, the same on ArviZ 0.x and 1.x. The thresholds follow ArviZ's
guidance (Vehtari et al. 2021, *Rank-normalization, folding, and
localization*): R-hat above :data:`MAX_RHAT` = 1.01, or a bulk ESS below
:data:`MIN_ESS_PER_CHAIN` = 100 per chain, or any divergence, is reported as
a problem.

What the numbers mean by backend:

- NUTS: the usual MCMC diagnostics. A single chain's two halves stand in for
  two chains (ArviZ needs at least two), so that one chain whose mixture
  changes half-way still shows.
- SVI: the draws of one restart are independent draws from its fitted
  family, so R-hat only measures whether the restarts agree (with one
  restart, it is about 1 by construction), and the ESS falls short of the
  number of draws only when they do not. The divergence count is ``None``.
- MAP: one draw per restart has no within-chain variance: R-hat, ESS and
  the divergence count are ``None``. Compare restarts by their objective
  (``Fit.best_chain``, ``Fit.losses``) instead.

``alpha`` and ``lp`` do not depend on which label a component carries, but
the truncated stick-breaking prior is not exchangeable: chains that hold the
same components in different orders sit in different modes of it and can
disagree on both (see :mod:`dpgmm_ppl.labels.report`). The log densities at
the data points depend on neither.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from dpgmm_ppl.mixtures import mixture_log_density
from dpgmm_ppl.sharding import holds_rows

if TYPE_CHECKING:
    from dpgmm_ppl.result import Fit

__all__ = [
    "DATA_QUANTILES",
    "MAX_RHAT",
    "MAX_TREEDEPTH_SHARE",
    "MIN_ESS_PER_CHAIN",
    "Diagnostics",
    "diagnose",
    "diagnostic_draws",
    "diagnostic_points",
    "slow_chain_problems",
    "treedepth_shares",
]

#: R-hat above this marks a quantity whose chains disagree.
MAX_RHAT = 1.01
#: A bulk ESS below this many per chain is too few to trust the R-hat.
MIN_ESS_PER_CHAIN = 100
#: A NUTS chain whose trees reached ``max_tree_depth`` in more than this
#: share of its draws is reported as slow.
MAX_TREEDEPTH_SHARE = 0.1
#: Levels of the data quantiles at which the mixture's log density is watched.
DATA_QUANTILES = (0.1, 0.5, 0.9)
#: For vector data: at most this many data points are screened for the
#: quantiles of the mean log density, and at most this many draws average it.
_MAX_SCREENED_POINTS = 1000
_MAX_SCREENING_DRAWS = 100
#: ArviZ's smallest chain for split R-hat and ESS.
_MIN_DRAWS = 4
_DENSITY_NAMES = tuple(f"log_density(q{round(100 * level)})" for level in DATA_QUANTILES)


def _finite_or_none(value):
    return None if value is None or not math.isfinite(value) else value


def treedepth_shares(reached_max_treedepth) -> tuple[float, ...]:
    """Each chain's share of draws whose NUTS tree reached the depth bound.

    Parameters
    ----------
    reached_max_treedepth : Bool[Array, "chain draw"]
        The sample statistic of that name.

    Returns
    -------
    tuple of float
        One share per chain.

    Examples
    --------
    >>> treedepth_shares(np.array([[False, False, True, False], [True] * 4]))
    (0.25, 1.0)
    """
    return tuple(float(share) for share in np.mean(np.asarray(reached_max_treedepth), axis=1))


def slow_chain_problems(shares) -> list[str]:
    """One sentence per chain whose share of draws at the depth bound exceeds
    :data:`MAX_TREEDEPTH_SHARE`.

    Examples
    --------
    >>> slow_chain_problems((0.0, 0.02, 0.96))
    ['chain 2 reached the maximum tree depth in 96% of its draws (> 10%)']
    """
    return [f"chain {chain} reached the maximum tree depth in {share:.0%} of its draws "
            f"(> {MAX_TREEDEPTH_SHARE:.0%})"
            for chain, share in enumerate(shares) if not share <= MAX_TREEDEPTH_SHARE]


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """Divergences, R-hat and bulk ESS of one fit's label-invariant quantities.

    Attributes
    ----------
    backend : str
        The fit's backend.
    num_chains, num_draws : int
        The fit's chains (restarts) and draws per chain.
    divergences : int or None
        Divergent transitions after warmup, over all chains; ``None`` for a
        backend that does not simulate trajectories (MAP, SVI).
    quantities : tuple of str
        The quantities checked, in the order of ``rhat`` and ``ess``.
    rhat, ess : tuple of float or None
        Rank-normalised split R-hat and bulk ESS of each quantity; ``None``
        where undefined (fewer than 4 draws per chain, as for MAP).
    treedepth_shares : tuple of float or None
        NUTS: each chain's share of draws whose tree reached
        ``max_tree_depth`` (the sample statistic ``reached_max_treedepth``);
        ``None`` for a fit without it.
    irreversible : int or None
        NUTS: draws after warmup whose tree stopped at a step that failed
        the reversibility test of the halving leapfrog
        (:mod:`~dpgmm_ppl.infer._nuts_tree`). Such a stop keeps the chain
        exact, so it is not a problem; many of them mean short trees.
        ``None`` for a fit without the statistic.

    Examples
    --------
    >>> d = Diagnostics("nuts", 2, 500, 0, ("alpha", "lp"), (1.002, 1.03), (900.0, 150.0))
    >>> d
    Diagnostics(nuts, 2 chains x 500 draws: divergences 0, max R-hat 1.030 (lp), min ESS 150 (lp))
    >>> d.problems
    ('R-hat of lp is 1.030 > 1.01', 'bulk ESS of lp is 150 < 200 (100 per chain)')
    """

    backend: str
    num_chains: int
    num_draws: int
    divergences: Optional[int]
    quantities: tuple[str, ...]
    rhat: tuple[Optional[float], ...]
    ess: tuple[Optional[float], ...]
    treedepth_shares: Optional[tuple[float, ...]] = None
    irreversible: Optional[int] = None

    def _extreme(self, values, pick):
        """``(value, quantity)`` of the worst defined value; NaN counts as the worst."""
        defined = [(value, name) for name, value in zip(self.quantities, values)
                   if value is not None]
        if not defined:
            return None, None
        not_a_number = [(value, name) for value, name in defined if math.isnan(value)]
        return (not_a_number or [pick(defined, key=lambda pair: pair[0])])[0]

    @property
    def max_rhat(self) -> Optional[float]:
        """The largest R-hat (NaN if some R-hat is NaN), ``None`` if none is defined."""
        return self._extreme(self.rhat, max)[0]

    @property
    def min_ess(self) -> Optional[float]:
        """The smallest bulk ESS (NaN if some ESS is NaN), ``None`` if none is defined."""
        return self._extreme(self.ess, min)[0]

    @property
    def min_ess_required(self) -> int:
        """The bulk ESS below which the fit is flagged: 100 per chain."""
        return MIN_ESS_PER_CHAIN * self.num_chains

    @property
    def problems(self) -> tuple[str, ...]:
        """One plain sentence per failed check; empty when every check passes."""
        found = []
        if self.divergences:
            found.append(f"{self.divergences} divergent transition"
                         f"{'s' if self.divergences > 1 else ''} after warmup")
        rhat, name = self._extreme(self.rhat, max)
        if rhat is not None and not rhat <= MAX_RHAT:
            found.append(f"R-hat of {name} is {rhat:.3f} > {MAX_RHAT}")
        ess, name = self._extreme(self.ess, min)
        if ess is not None and not ess >= self.min_ess_required:
            found.append(f"bulk ESS of {name} is {ess:.0f} < {self.min_ess_required} "
                         f"({MIN_ESS_PER_CHAIN} per chain)")
        if self.treedepth_shares is not None:
            found += slow_chain_problems(self.treedepth_shares)
        return tuple(found)

    @property
    def is_ok(self) -> bool:
        """No divergence, and every defined R-hat and ESS within its threshold."""
        return not self.problems

    def __repr__(self) -> str:
        rhat, rhat_name = self._extreme(self.rhat, max)
        ess, ess_name = self._extreme(self.ess, min)
        parts = [f"divergences {self.divergences}"]
        if self.irreversible is not None:
            parts.append(f"irreversible {self.irreversible}")
        parts += ["max R-hat None" if rhat is None else f"max R-hat {rhat:.3f} ({rhat_name})",
                  "min ESS None" if ess is None else f"min ESS {ess:.0f} ({ess_name})"]
        chains = f"{self.num_chains} chain{'' if self.num_chains == 1 else 's'}"
        return (f"Diagnostics({self.backend}, {chains} x {self.num_draws} draws: "
                + ", ".join(parts) + ")")

    def to_dict(self) -> dict[str, Any]:
        """The diagnostics as plain JSON values: NaN and infinities become ``None``.

        Returns
        -------
        dict
            ``divergences``, ``irreversible``, ``max_rhat``, ``min_ess``,
            per-quantity ``rhat`` and ``ess``, ``treedepth_shares``, the ``thresholds`` applied
            and the ``problems``.
        """
        return {
            "backend": self.backend,
            "num_chains": self.num_chains,
            "num_draws": self.num_draws,
            "divergences": self.divergences,
            "irreversible": self.irreversible,
            "max_rhat": _finite_or_none(self.max_rhat),
            "min_ess": _finite_or_none(self.min_ess),
            "rhat": {name: _finite_or_none(v) for name, v in zip(self.quantities, self.rhat)},
            "ess": {name: _finite_or_none(v) for name, v in zip(self.quantities, self.ess)},
            "treedepth_shares": (None if self.treedepth_shares is None
                                 else list(self.treedepth_shares)),
            "thresholds": {"max_rhat": MAX_RHAT, "min_ess": self.min_ess_required,
                           "max_treedepth_share": MAX_TREEDEPTH_SHARE},
            "problems": list(self.problems),
        }


def diagnostic_points(fit: Fit) -> np.ndarray:
    """The data points at which :func:`diagnostic_draws` watches the log density.

    Scalar data: the 10/50/90% quantiles of the data. Vector data have no
    quantiles of their own; there the points are the data points whose mean
    log density (over the draws) lies nearest the 10/50/90% quantiles of the
    mean log densities of all the points: one in the sparse edge of the data,
    one typical, one in a dense core. The screening uses at most 1,000
    evenly spaced data points and 100 evenly spaced draws. The mixture
    density does not depend on the component labels, so neither do the points.

    Parameters
    ----------
    fit : Fit
        Any fit.

    Returns
    -------
    np.ndarray
        Shape ``(3,)`` for scalar data, ``(3, D)`` otherwise, in the data's dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.ones((1, 1, 1)),
    ...            "loc": np.zeros((1, 1, 1)), "scale": np.ones((1, 1, 1))}
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, np.arange(11.0), 1, Priors())
    >>> diagnostic_points(fit).tolist()
    [1.0, 5.0, 9.0]
    """
    data = np.asarray(fit.data)
    if data.ndim == 1:
        return np.quantile(data, DATA_QUANTILES).astype(data.dtype)
    rows = np.unique(np.linspace(0, data.shape[0] - 1, _MAX_SCREENED_POINTS).astype(int))
    flat = {name: np.reshape(value, (1, -1) + np.shape(value)[2:])
            for name, value in fit.samples.items()}
    total = fit.num_chains * fit.num_draws
    draws = np.unique(np.linspace(0, total - 1, _MAX_SCREENING_DRAWS).astype(int))
    screening = {name: value[:, draws] for name, value in flat.items()}
    mean_log_density = np.mean(mixture_log_density(screening, data[rows]), axis=(0, 1))
    targets = np.quantile(mean_log_density, DATA_QUANTILES)
    nearest = np.argmin(np.abs(mean_log_density[None, :] - targets[:, None]), axis=1)
    return data[rows[nearest]]


def diagnostic_draws(fit: Fit) -> dict[str, np.ndarray]:
    """The label-invariant quantities of every draw that :func:`diagnose` checks.

    Parameters
    ----------
    fit : Fit
        Any fit.

    Returns
    -------
    dict of str to np.ndarray
        ``alpha``, ``lp`` (when the fit records it) and
        ``log_density(q10)``, ``log_density(q50)``, ``log_density(q90)``
        (the log density of each draw's mixture at :func:`diagnostic_points`;
        left out when the fit's rows are spread over processes and this one
        holds no values), each of shape ``(chain, draw)``, in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> samples = {"alpha": np.ones((1, 1)), "weights": np.ones((1, 1, 1)),
    ...            "loc": np.zeros((1, 1, 1)), "scale": np.ones((1, 1, 1))}
    >>> fit = Fit("map", samples, {"lp": np.zeros((1, 1))}, np.zeros(5), 1, Priors())
    >>> draws = diagnostic_draws(fit)
    >>> list(draws), round(float(draws["log_density(q50)"][0, 0]), 4)
    (['alpha', 'lp', 'log_density(q10)', 'log_density(q50)', 'log_density(q90)'], -0.9189)
    """
    draws = {"alpha": fit.samples["alpha"]}
    if "lp" in fit.sample_stats:
        draws["lp"] = fit.sample_stats["lp"]
    if not holds_rows(fit.data):
        # Rows spread over processes (dpgmm_ppl.sharding.SpreadRows): no
        # values on this host, so no data points to watch.
        return {name: np.asarray(value, np.float64) for name, value in draws.items()}
    log_density = mixture_log_density(fit.samples, diagnostic_points(fit))
    for index, name in enumerate(_DENSITY_NAMES):
        draws[name] = log_density[..., index]
    return {name: np.asarray(value, np.float64) for name, value in draws.items()}


def _rhat_and_ess(values):
    """ArviZ's rank R-hat and bulk ESS of ``(chain, draw)`` values; ``None`` when undefined."""
    from dpgmm_ppl._arviz_compat import arviz

    num_chains, num_draws = values.shape
    if num_draws < _MIN_DRAWS:
        return None, None
    chains = values
    if num_chains == 1:  # ArviZ's R-hat needs two chains: the two halves of the one
        half = num_draws // 2
        chains = values[0, : 2 * half].reshape(2, half) if half >= _MIN_DRAWS else None
    az = arviz()
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = None if chains is None else float(az.rhat(chains))
        ess = float(az.ess(values, method="bulk"))
    return rhat, ess


def diagnose(fit: Fit) -> Diagnostics:
    """Divergences, R-hat and bulk ESS of a fit's label-invariant quantities.

    For NUTS also each chain's share of draws whose tree reached the depth
    bound (:func:`treedepth_shares`).

    Parameters
    ----------
    fit : Fit
        Any fit; see the module notes for what the numbers mean by backend.

    Returns
    -------
    Diagnostics
        ``problems`` lists what fails :data:`MAX_RHAT`, :data:`MIN_ESS_PER_CHAIN`
        per chain or has divergences; ``to_dict()`` gives JSON values.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> rng = np.random.default_rng(0)
    >>> alpha = rng.gamma(2.0, size=(2, 400))
    >>> alpha[1] += 3.0  # the second chain sits elsewhere
    >>> samples = {"alpha": alpha, "weights": np.ones((2, 400, 1)),
    ...            "loc": rng.normal(size=(2, 400, 1)), "scale": np.ones((2, 400, 1))}
    >>> stats = {"lp": rng.normal(size=(2, 400)), "diverging": np.zeros((2, 400), bool)}
    >>> result = diagnose(Fit("nuts", samples, stats, rng.normal(size=50), 1, Priors()))
    >>> result.divergences, result.max_rhat > 1.5, result.problems[0].startswith("R-hat of alpha")
    (0, True, True)
    """
    from dpgmm_ppl.result import Fit

    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a dpgmm_ppl.Fit, got {type(fit).__name__}")
    divergences = shares = irreversible = None
    if "diverging" in fit.sample_stats:
        divergences = int(np.sum(fit.sample_stats["diverging"]))
    if "irreversible" in fit.sample_stats:
        irreversible = int(np.sum(fit.sample_stats["irreversible"]))
    if "reached_max_treedepth" in fit.sample_stats:
        shares = treedepth_shares(fit.sample_stats["reached_max_treedepth"])
    if fit.num_draws < _MIN_DRAWS:  # nothing to compute (MAP): no densities either
        names = ("alpha",) + (("lp",) if "lp" in fit.sample_stats else ()) + _DENSITY_NAMES
        pairs = [(None, None)] * len(names)
    else:
        draws = diagnostic_draws(fit)
        names, pairs = tuple(draws), [_rhat_and_ess(values) for values in draws.values()]
    return Diagnostics(
        backend=fit.backend,
        num_chains=fit.num_chains,
        num_draws=fit.num_draws,
        divergences=divergences,
        quantities=names,
        rhat=tuple(rhat for rhat, _ in pairs),
        ess=tuple(ess for _, ess in pairs),
        treedepth_shares=shares,
        irreversible=irreversible,
    )
