"""The label-switching report: R-hat of component sites against invariant ones.

Label switching shows as per-component sites (``weights``, ``loc``,
``scale``) failing R-hat while label-invariant quantities (the number of
components used, the log density at data quantiles) pass.

``alpha`` and ``lp`` are reported beside them but do not decide: the
truncated stick-breaking prior is not exchangeable (the first stick is the
largest on average), so two orders of the same components are two modes
with different prior densities and different posteriors of ``alpha``.
Chains in different orders disagree on them even when every chain has mixed
within its own mode; relabelling does not change them either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dpgmm_ppl._display import html_table, text_table
from dpgmm_ppl.labels._checks import _check_fit, _check_number
from dpgmm_ppl.labels._kernels import _SITES
from dpgmm_ppl.labels.relabelling import _best_permutations
from dpgmm_ppl.mixtures import mixture_log_density
from dpgmm_ppl.priors import data_center_and_spread

if TYPE_CHECKING:
    import numpy.typing as npt

    from dpgmm_ppl.result import Fit

__all__ = ["LabelSwitchingReport", "label_switching_report", "ORDER_DEPENDENT"]

#: Reported quantities that depend on the order of the components under the
#: stick-breaking prior, so do not count as label-invariant in the verdict.
ORDER_DEPENDENT = ("alpha", "lp")


class LabelSwitchingReport(NamedTuple):
    """Convergence of per-component sites against label-invariant quantities.

    Attributes
    ----------
    component_rhat, component_ess : dict of str to np.ndarray
        Split R-hat and effective sample size of ``weights``, ``loc``,
        ``scale`` per component: ``(K,)``, or ``(K, D)`` for vector data.
    invariant_rhat, invariant_ess : dict of str to float
        The same for ``alpha``, ``lp``, ``num_components_used`` and the log
        density of each draw at the 10/50/90% quantiles of the data. Only the
        last four are label-invariant under the stick-breaking prior (see
        :data:`ORDER_DEPENDENT`); ``alpha`` and ``lp`` are for reading.
    chain_permutations : Int[Array, "chain num_components"]
        Per chain, the permutation that maps its mean parameters onto chain
        0's (``new[k] = old[perm[k]]``, as in :func:`relabel`).
    is_switching : bool
        Some component site has R-hat above ``threshold`` while every
        label-invariant quantity (not ``alpha`` or ``lp``) is below it (NaN
        counts as below). With
        fewer than 4 draws per chain (MAP), where R-hat is undefined: some
        chain's permutation is not the identity.
    threshold : float
    notes : tuple of str
    """

    component_rhat: dict
    component_ess: dict
    invariant_rhat: dict
    invariant_ess: dict
    chain_permutations: np.ndarray
    is_switching: bool
    threshold: float
    notes: tuple

    def to_string(self) -> str:
        """A plain-text table of the report."""
        verdict = "label switching detected" if self.is_switching else "no label switching detected"
        lines = [f"{verdict} (R-hat threshold {self.threshold:g})",
                 f"  {'label-invariant':<26}{'R-hat':>8}{'ESS':>9}"]
        for name, rhat in self.invariant_rhat.items():
            shown = f"{name} *" if name in ORDER_DEPENDENT else name
            lines.append(f"  {shown:<26}{rhat:>8.3f}{self.invariant_ess[name]:>9.0f}")
        lines.append("  * depends on the order of the components under the stick-breaking "
                     "prior; not used in the verdict")
        lines.append(f"  {'per component, worst':<26}{'R-hat':>8}{'ESS':>9}  component")
        for name, rhat, lowest, worst in self._worst_components():
            lines.append(f"  {name:<26}{rhat:>8.3f}{lowest:>9.0f}  {worst}")
        lines.append("  chain permutations onto chain 0 (new[k] = old[perm[k]]):")
        lines.extend(f"    chain {chain}: {permutation.tolist()}"
                     for chain, permutation in enumerate(self.chain_permutations))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_string()

    def _worst_components(self):
        """``(site, worst R-hat, lowest ESS, component)`` of each per-component site."""
        rows = []
        for name, rhat in self.component_rhat.items():
            rhat = _worst_per_component(rhat, np.fmax)
            ess = _worst_per_component(self.component_ess[name], np.fmin)
            worst = int(np.argmax(np.nan_to_num(rhat, nan=-np.inf)))
            lowest = np.nan if np.isnan(ess).all() else float(np.nanmin(ess))
            rows.append((name, float(rhat[worst]), lowest, worst))
        return rows

    def __repr__(self) -> str:
        worst = max(self._worst_components(), key=lambda row: np.nan_to_num(row[1], nan=-np.inf))
        invariant = [rhat for name, rhat in self.invariant_rhat.items() if name not in ORDER_DEPENDENT]
        highest = np.nan if np.isnan(invariant).all() else float(np.nanmax(invariant))
        permutations = np.asarray(self.chain_permutations)
        moved = int(np.sum(np.any(permutations != np.arange(permutations.shape[-1]), axis=-1)))
        rows = [
            ("worst component R-hat", f"{worst[1]:.3f} ({worst[0]}, component {worst[3]})"),
            ("label-invariant R-hat", f"at most {highest:.3f} (alpha and lp not counted)"),
            ("chains relabelled", f"{moved} of {permutations.shape[0]} differ from chain 0"),
        ]
        if self.notes:
            rows.append(("notes", f"{len(self.notes)}; print(report) for them and the table"))
        header = f"LabelSwitchingReport(is_switching={self.is_switching}, threshold={self.threshold:g})"
        return "\n".join([header, *text_table(rows)])

    def _repr_html_(self):
        rows = [(f"{name} *" if name in ORDER_DEPENDENT else name, f"{rhat:.3f}",
                 f"{self.invariant_ess[name]:.0f}", "")
                for name, rhat in self.invariant_rhat.items()]
        rows += [(f"{name} (worst)", f"{rhat:.3f}", f"{ess:.0f}", str(component))
                 for name, rhat, ess, component in self._worst_components()]
        verdict = "label switching detected" if self.is_switching else "no label switching detected"
        caption = (f"{verdict} (R-hat threshold {self.threshold:g}); "
                   "* depends on the order of the components, not used in the verdict")
        return html_table(rows, header=("quantity", "R-hat", "ESS", "component"), caption=caption)


def _worst_per_component(values, pick):
    """Reduce ``(K, D)`` to ``(K,)`` with ``pick`` (worst over dims); ``(K,)`` unchanged."""
    values = np.asarray(values, float)
    return values if values.ndim == 1 else pick.reduce(values, axis=1)


def _rhat_and_ess(values):
    """Split R-hat and ESS of ``(chain, draw, ...)`` values; NaN when a chain has < 4 draws."""
    values = np.asarray(values, np.float64)
    if values.shape[1] < 4:
        missing = np.full(values.shape[2:], np.nan)
        return missing, missing
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    with np.errstate(divide="ignore", invalid="ignore"):
        return split_gelman_rubin(values), effective_sample_size(values)


def _quantile_points(x):
    """The 10/50/90% quantiles of the data, per coordinate for vector data."""
    return np.quantile(x, [0.1, 0.5, 0.9], axis=0).astype(x.dtype)


def _invariant_quantities(fit, x):
    """Label-invariant ``(chain, draw)`` quantities by name."""
    quantities = {
        "alpha": fit.samples["alpha"],
        "lp": fit.sample_stats["lp"],
        "num_components_used": fit.num_components_used(),
    }
    log_density = mixture_log_density(fit.samples, _quantile_points(x))
    for index, level in enumerate((10, 50, 90)):
        quantities[f"log_density(q{level})"] = log_density[..., index]
    return quantities


def _per_dimension(samples, covariance=None):
    """The scales with ``loc``'s shape (a spherical scale repeated over the
    dimensions), as the covariance structure reads them from ``samples``."""
    from dpgmm_ppl.covariance import covariance_structure, structure_of

    structure = structure_of(samples) if covariance is None else covariance_structure(covariance)
    return structure.marginal_scales(samples)


def _chain_permutations(fit, x):
    """Per chain, the assignment of its mean parameters onto chain 0's."""
    # A constant column's magnitude, or 1, stands in for its zero spread (as in the
    # priors): dividing by a tiny number overflowed the features of such a column.
    spread = data_center_and_spread(x)[1]
    lead = (fit.num_chains, fit.num_components, -1)
    features = np.concatenate([
        np.mean(fit.samples["weights"], axis=1).reshape(lead),
        np.mean(np.asarray(fit.samples["loc"]) / spread, axis=1).reshape(lead),
        np.mean(np.log(_per_dimension(fit.samples, fit.covariance) / spread), axis=1).reshape(lead),
    ], axis=-1)
    costs = np.sum((features[:, :, None, :] - features[0][None, None]) ** 2, axis=-1)
    return _best_permutations(costs)


def label_switching_report(
    fit: Fit, *, x: npt.ArrayLike | None = None, threshold: float = 1.1
) -> LabelSwitchingReport:
    """Diagnose label switching: component sites fail R-hat, invariant ones pass.

    Parameters
    ----------
    fit : Fit
    x : Float[Array, "n"] or Float[Array, "n D"], optional
        Points whose 10/50/90% quantiles the log density is checked at, and whose
        spread scales the parameters matched between chains; the training data
        by default.
    threshold : float
        R-hat above which a quantity has not converged, ``> 1``.

    Returns
    -------
    LabelSwitchingReport
        ``str(report)`` is a readable table.

    Examples
    --------
    >>> import numpy as np
    >>> from dpgmm_ppl import Fit
    >>> from dpgmm_ppl.priors import Priors
    >>> rng = np.random.default_rng(0)
    >>> loc = np.array([-4.0, 4.0]) + 0.1 * rng.normal(size=(2, 100, 2))
    >>> loc[1] = loc[1, :, ::-1]  # chain 1 uses the other labelling
    >>> samples = {"alpha": rng.gamma(2.0, size=(2, 100)), "weights": np.full((2, 100, 2), 0.5),
    ...            "loc": loc, "scale": np.ones((2, 100, 2))}
    >>> fit = Fit("nuts", samples, {"lp": rng.normal(size=(2, 100))},
    ...           np.array([-4.0, -3.0, 3.0, 4.0]), 2, Priors())
    >>> report = label_switching_report(fit)
    >>> report.is_switching, report.chain_permutations.tolist()
    (True, [[0, 1], [1, 0]])
    """
    _check_fit(fit)
    x = fit.data if x is None else fit._check_points(x)
    threshold = _check_number("threshold", threshold, "a number > 1", lambda value: value > 1)
    component = {name: _rhat_and_ess(fit.samples[name]) for name in _SITES}
    invariant = {name: _rhat_and_ess(value) for name, value in _invariant_quantities(fit, x).items()}
    permutations = _chain_permutations(fit, x)
    notes = []
    if fit.num_draws < 4:
        notes.append(f"R-hat and ESS need at least 4 draws per chain, this fit has {fit.num_draws}: "
                     "switching is judged from the chain permutations")
        is_switching = bool(np.any(permutations != np.arange(fit.num_components)))
    else:
        component_fails = any(np.any(rhat > threshold) for rhat, _ in component.values())
        invariant_passes = not any(
            rhat > threshold for name, (rhat, _) in invariant.items() if name not in ORDER_DEPENDENT
        )
        is_switching = bool(component_fails and invariant_passes)
        order_fails = [name for name in ORDER_DEPENDENT if invariant[name][0] > threshold]
        if is_switching and order_fails:
            notes.append(
                f"{' and '.join(order_fails)} {'differs' if len(order_fails) == 1 else 'differ'} "
                "between chains: chains in different "
                "orders of the components sit in different modes of the stick-breaking prior"
            )
        constant = [name for name, (rhat, _) in invariant.items() if np.isnan(rhat)]
        if constant:
            notes.append(f"{', '.join(constant)}: the same in every draw, R-hat undefined (NaN)")
        if component_fails and not invariant_passes:
            notes.append("label-invariant quantities fail R-hat too: the chains have not mixed")
    return LabelSwitchingReport(
        component_rhat={name: value[0] for name, value in component.items()},
        component_ess={name: value[1] for name, value in component.items()},
        invariant_rhat={name: float(value[0]) for name, value in invariant.items()},
        invariant_ess={name: float(value[1]) for name, value in invariant.items()},
        chain_permutations=permutations,
        is_switching=is_switching,
        threshold=float(threshold),
        notes=tuple(notes),
    )
