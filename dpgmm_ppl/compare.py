"""Put backends side by side on the same data, with the same key."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dpgmm_ppl._display import html_table
from dpgmm_ppl._validation import check_data, check_training_data
from dpgmm_ppl.options import check_fit_arguments, resolve_options

if TYPE_CHECKING:
    import jax
    import pandas as pd
    from jax.typing import ArrayLike

    from dpgmm_ppl.priors import Priors
    from dpgmm_ppl.result import Fit

__all__ = ["Comparison", "compare"]

COLUMNS = (
    "backend",
    "compile_seconds",
    "run_seconds",
    "wall_seconds",
    "heldout_log_density",
    "components_used",
    "alpha",
    "ess_per_second_lp",
    "divergences",
)


class Comparison(dict):
    """The comparison table: a dict of columns (one entry per backend), plus the fits.

    ``repr`` (and ``to_string``) is the table as text; a notebook shows it
    as an HTML table.

    Attributes
    ----------
    fits : dict of str to Fit
        The fit of each backend, for plots and ArviZ.
    """

    def __init__(self, columns: Mapping[str, list], fits: Mapping[str, Fit]) -> None:
        super().__init__(columns)
        self.fits = fits

    def _cells(self):
        header = [name for name in COLUMNS if name in self]
        rows = [[_format(self[name][i]) for name in header] for i in range(len(self["backend"]))]
        return header, rows

    def __repr__(self) -> str:
        backends = ", ".join(self.get("backend", []))
        return f"Comparison of {backends} (the fits in .fits)\n" + self.to_string()

    def _repr_html_(self) -> str:
        header, rows = self._cells()
        return html_table(rows, header=header, caption="Comparison (the fits in .fits)")

    def to_string(self) -> str:
        """A fixed-width text table."""
        header, rows = self._cells()
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)

    def to_pandas(self) -> pd.DataFrame:
        """The table as a ``pandas.DataFrame`` (pandas is not a dependency)."""
        import pandas as pd

        return pd.DataFrame(dict(self))


def _format(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def _ess_per_second(fit):
    if not fit.is_mcmc:
        return None
    from numpyro.diagnostics import effective_sample_size

    ess = float(effective_sample_size(np.asarray(fit.sample_stats["lp"], np.float64)))
    return ess / max(fit.timing.get("run_seconds", np.nan), 1e-12)


def _check_backends(backends):
    from dpgmm_ppl.infer import BACKENDS

    if backends is None:
        return tuple(BACKENDS)
    if isinstance(backends, str) or not isinstance(backends, Sequence) or not backends:
        raise TypeError(f"backends must be a non-empty sequence of names, got {backends!r}")
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        raise ValueError(f"backends must be among {sorted(BACKENDS)}, got {unknown}")
    return tuple(backends)


def _check_backend_options(backend_options, backends):
    """``backend_options`` as a dict of backend name to a dict of options."""
    backend_options = {} if backend_options is None else backend_options
    if not isinstance(backend_options, Mapping):
        raise TypeError(
            "backend_options must be a dict of backend name to a dict of options, "
            f"got {type(backend_options).__name__}"
        )
    stray = sorted(set(backend_options) - set(backends), key=str)
    if stray:
        raise ValueError(f"backend_options names backends not being run: {stray}")
    for name, options in backend_options.items():
        if not isinstance(options, Mapping):
            raise TypeError(
                f"backend_options[{name!r}] must be a dict of options, "
                f"got {type(options).__name__}"
            )
    return {name: dict(options) for name, options in backend_options.items()}


def _check_heldout(heldout, data):
    if heldout is None:
        return None
    heldout = check_data(heldout, name="heldout", min_points=1)
    if heldout.shape[1:] != data.shape[1:]:
        raise ValueError(
            f"heldout must have the training data's dimension {data.shape[1:]}, "
            f"got shape {heldout.shape}"
        )
    return heldout


def compare(
    data: ArrayLike,
    *,
    backends: Sequence[str] | None = None,
    heldout: ArrayLike | None = None,
    rng_key: jax.Array | int = 0,
    num_components: int = 25,
    num_chains: int = 4,
    priors: Priors | None = None,
    covariance: str = "diag",
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Comparison:
    """Fit each backend with the same key and tabulate time, fit and diagnostics.

    Every argument, each backend's options included, is checked before the
    first backend runs.

    Parameters
    ----------
    data : array of shape (N,) or (N, D)
        Training data.
    backends : sequence of str, optional
        Backends to run, in order; by default every registered one
        (:data:`dpgmm_ppl.infer.BACKENDS`: ``"map"``, ``"svi"``, ``"nuts"``).
    heldout : array, optional
        Held-out points; adds the mean log predictive density per point.
    rng_key : int or PRNGKey
        The same key for every backend.
    num_components, num_chains : int
        Shared by every backend (restarts for MAP and SVI, chains for NUTS).
    priors : Priors, optional
        Hyperparameters, shared by every backend.
    covariance : {"diag", "spherical", "full"}
        The covariance structure of the components (:func:`dpgmm_ppl.fit`).
    backend_options : dict of str to dict, optional
        Extra options per backend, e.g. ``{"nuts": {"num_samples": 500}}``.

    Returns
    -------
    Comparison
        Columns ``backend``, ``compile_seconds``, ``run_seconds``,
        ``wall_seconds``, ``heldout_log_density``, ``components_used`` (mean
        number of components above 1% weight), ``alpha`` (MAP: the best
        restart's point; otherwise the posterior mean), ``ess_per_second_lp``
        (Markov chains: NUTS) and ``divergences`` (NUTS); ``.fits`` holds
        the fits.
    """
    from dpgmm_ppl.api import fit as run_fit

    backends = _check_backends(backends)
    backend_options = _check_backend_options(backend_options, backends)
    # Everything a backend would refuse is refused before the first one runs.
    data = check_training_data(data)
    heldout = _check_heldout(heldout, data)
    arguments = check_fit_arguments(
        data, num_components=num_components, num_chains=num_chains, rng_key=rng_key,
        priors=priors, covariance=covariance,
    )
    priors, covariance = arguments.priors, arguments.covariance
    for name in backends:
        resolve_options(name, backend_options.get(name, {}), num_points=data.shape[0])
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    fits = {}
    for name in backends:
        start = time.perf_counter()
        result = run_fit(
            data, backend=name, rng_key=rng_key, num_components=num_components,
            num_chains=num_chains, priors=priors, covariance=covariance,
            **backend_options.get(name, {}),
        )
        wall = time.perf_counter() - start
        fits[name] = result
        alpha = result.samples["alpha"]
        columns["backend"].append(name)
        columns["compile_seconds"].append(float(result.timing.get("compile_seconds", np.nan)))
        columns["run_seconds"].append(float(result.timing.get("run_seconds", np.nan)))
        columns["wall_seconds"].append(wall)
        columns["heldout_log_density"].append(
            None if heldout is None else float(np.mean(result.log_predictive_density(heldout)))
        )
        columns["components_used"].append(float(np.mean(result.num_components_used(0.01))))
        columns["alpha"].append(
            float(alpha[result.best_chain, 0]) if result.is_point_estimate
            else float(np.mean(alpha))
        )
        columns["ess_per_second_lp"].append(_ess_per_second(result))
        columns["divergences"].append(
            int(np.sum(result.sample_stats["diverging"])) if "diverging" in result.sample_stats else None
        )
    return Comparison(columns, fits)
