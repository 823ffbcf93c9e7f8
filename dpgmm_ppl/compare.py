"""Put backends side by side on the same data, with the same key."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from dpgmm_ppl._display import html_table
from dpgmm_ppl._validation import (
    check_batch_size,
    check_covariance,
    check_data,
    check_positive_int,
    check_priors,
    check_rng_key,
    check_training_data,
)

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

    def __init__(self, columns, fits):
        super().__init__(columns)
        self.fits = fits

    def _cells(self):
        header = [name for name in COLUMNS if name in self]
        rows = [[_format(self[name][i]) for name in header] for i in range(len(self["backend"]))]
        return header, rows

    def __repr__(self):
        backends = ", ".join(self.get("backend", []))
        return f"Comparison of {backends} (the fits in .fits)\n" + self.to_string()

    def _repr_html_(self):
        header, rows = self._cells()
        return html_table(rows, header=header, caption="Comparison (the fits in .fits)")

    def to_string(self) -> str:
        """A fixed-width text table."""
        header, rows = self._cells()
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
        return "\n".join(lines)

    def to_pandas(self):
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
    if fit.backend != "nuts":
        return None
    from numpyro.diagnostics import effective_sample_size

    ess = float(effective_sample_size(np.asarray(fit.sample_stats["lp"], np.float64)))
    return ess / max(fit.timing.get("run_seconds", np.nan), 1e-12)


def _check_backends(backends):
    from dpgmm_ppl.infer import BACKENDS

    if isinstance(backends, str) or not isinstance(backends, Sequence) or not backends:
        raise TypeError(f"backends must be a non-empty sequence of names, got {backends!r}")
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        raise ValueError(f"backends must be among {sorted(BACKENDS)}, got {unknown}")


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


def _check_options_of(name, options, num_points):
    """The options of backend ``name`` as :func:`dpgmm_ppl.fit` would check them."""
    from dpgmm_ppl.api import _resolve_options
    from dpgmm_ppl.infer import BACKENDS

    resolved = _resolve_options(BACKENDS[name], options)
    check_batch_size(resolved.get("batch_size"), num_points)


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
    data,
    *,
    backends=("map", "svi", "nuts"),
    heldout=None,
    rng_key=0,
    num_components=25,
    num_chains=4,
    priors=None,
    covariance="diag",
    backend_options=None,
):
    """Fit each backend with the same key and tabulate time, fit and diagnostics.

    Every argument, each backend's options included, is checked before the
    first backend runs.

    Parameters
    ----------
    data : array of shape (N,) or (N, D)
        Training data.
    backends : sequence of str
        Backends to run, in order.
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
        (NUTS) and ``divergences`` (NUTS); ``.fits`` holds the fits.
    """
    from dpgmm_ppl.api import fit as run_fit

    _check_backends(backends)
    backend_options = _check_backend_options(backend_options, backends)
    # Everything a backend would refuse is refused before the first one runs.
    data = check_training_data(data)
    heldout = _check_heldout(heldout, data)
    check_positive_int("num_components", num_components)
    check_positive_int("num_chains", num_chains)
    check_rng_key(rng_key)
    priors = check_priors(priors, data, num_components)
    covariance = check_covariance(covariance, data, priors)
    for name in backends:
        _check_options_of(name, backend_options.get(name, {}), data.shape[0])
    columns = {name: [] for name in COLUMNS}
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
            float(alpha[result.best_chain, 0]) if name == "map" else float(np.mean(alpha))
        )
        columns["ess_per_second_lp"].append(_ess_per_second(result))
        columns["divergences"].append(
            int(np.sum(result.sample_stats["diverging"])) if "diverging" in result.sample_stats else None
        )
    return Comparison(columns, fits)
