"""``dpgmm-ppl fit FILE``: one backend on a data file; the fit, a JSON summary and figures.

Everything that can be checked is checked before the fit starts: the
options, the data and held-out files, and the output files (none may exist
without ``--force``). The fit is written first (``fit.nc``), then the
figures, and the summary (``summary.json``) last, each file whole or not at
all: a directory holding ``summary.json`` holds a complete output.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from dpgmm_ppl.cli._commands import FLAGS, quick_options
from dpgmm_ppl.cli._figures import FIGURES, plan_figures, write_figure
from dpgmm_ppl.cli._files import check_outputs_free, read_table, write_text_atomic

__all__ = ["FIT_FILE", "SUMMARY_FILE", "diagnostics_record", "run_fit", "summarize"]

FIT_FILE, SUMMARY_FILE = "fit.nc", "summary.json"
#: Every file the command may write.
OUTPUTS = (FIT_FILE, *FIGURES, SUMMARY_FILE)
#: Components above this weight count as clusters.
THRESHOLD = 0.01
#: Probability of the equal-tailed interval of alpha.
INTERVAL = 0.9


def backend_options(backend, *, quick=False, progress_bar=False, **given):
    """The options of ``backend`` from the command line: ``--quick``, then those given.

    A flag of the command (``--num-steps``, ``--num-samples``, ``--num-warmup``)
    given for a backend that does not take its option is refused, naming the
    backends that do; every value is then checked as :func:`dpgmm_ppl.fit`
    checks it (:func:`dpgmm_ppl.options.resolve_options`), the error naming
    the flag.
    """
    from dpgmm_ppl.infer import BACKENDS, get_backend
    from dpgmm_ppl.options import resolve_options

    accepted = get_backend(backend).defaults
    options = quick_options(backend) if quick else {}
    for name, value in given.items():
        if value is None:
            continue
        takers = [other for other, taker in BACKENDS.items() if name in taker.defaults]
        if name not in accepted and takers:
            flag = FLAGS.get(name, name)
            raise ValueError(f"{flag} applies to --backend {' or '.join(takers)}, not {backend}")
        options[name] = value
    options["progress_bar"] = progress_bar
    resolve_options(backend, options, names=FLAGS)
    return options


def _mean_of_best_chain(fit, name):
    return np.asarray(fit.samples[name][fit.best_chain], np.float64).mean(axis=0)


def _components(fit, weights):
    """Components above the threshold, by decreasing weight: weight, loc, scale and,
    for vector data, the covariance matrix (its mean over the draws)."""
    from dpgmm_ppl.mixtures import covariance_matrices

    loc = _mean_of_best_chain(fit, "loc")
    scale = _mean_of_best_chain(fit, "scale")
    covariance = None
    if loc.ndim == 2:
        best = {name: value[fit.best_chain] for name, value in fit.samples.items()}
        covariance = np.mean(covariance_matrices(best), axis=0)
    rows = []
    for k in np.argsort(-weights, kind="stable"):
        if weights[k] > THRESHOLD:
            row = {"component": int(k), "weight": float(weights[k]), "loc": loc[k].tolist()}
            row["scale"] = scale[k].tolist()
            if covariance is not None:
                row["covariance"] = covariance[k].tolist()
            rows.append(row)
    return rows


def _alpha(fit):
    alpha = np.asarray(fit.samples["alpha"], np.float64)
    if fit.is_point_estimate:
        return {"value": float(alpha[fit.best_chain, 0]), "per_restart": alpha[:, 0].tolist()}
    lower, upper = np.quantile(alpha, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    return {
        "mean": float(alpha.mean()),
        "sd": float(alpha.std()),
        "interval": {"prob": INTERVAL, "lower": float(lower), "upper": float(upper)},
    }


def _num_clusters(fit, components):
    counts = fit.num_components_used(THRESHOLD)  # (chain, draw)
    result = {"threshold": THRESHOLD, "count": len(components)}
    if fit.is_point_estimate:
        result["per_restart"] = counts[:, 0].tolist()
    else:
        values, frequencies = np.unique(counts, return_counts=True)
        result["posterior"] = {
            str(value): float(count / counts.size) for value, count in zip(values, frequencies)
        }
        result["posterior_mean"] = float(counts.mean())
    return result


def summarize(fit):
    """The fitted mixture in plain numbers, for the JSON summary.

    ``weights`` (every component) and the ``components`` above 1% weight,
    by decreasing weight, are the posterior means over the draws of the best
    chain (for MAP, the best restart's point): averaging over chains would
    blur components whose labels differ between chains. ``alpha`` is MAP's
    value, or the posterior mean, standard deviation and a 90%
    equal-tailed interval over every draw. ``num_clusters`` counts the
    components above 1% weight, with its posterior over every draw for SVI
    and NUTS (a count, unaffected by labels).
    """
    weights = _mean_of_best_chain(fit, "weights")
    components = _components(fit, weights)
    return {
        "chain": fit.best_chain,
        "alpha": _alpha(fit),
        "weights": weights.tolist(),
        "components": components,
        "num_clusters": _num_clusters(fit, components),
    }


def diagnostics_record(fit):
    """``divergences``, ``max_rhat`` and ``min_ess`` of :meth:`~dpgmm_ppl.Fit.diagnostics`,
    and its whole ``to_dict()`` under ``diagnostics``.

    ``None`` where a number is undefined: divergences for MAP and SVI, R-hat
    and ESS for MAP (one draw per restart; see :mod:`dpgmm_ppl.diagnostics`).
    """
    details = fit.diagnostics().to_dict()
    record = {name: details[name] for name in ("divergences", "max_rhat", "min_ess")}
    record["diagnostics"] = details
    return record


def _print_diagnostics(details, stream):
    """One line of diagnostics, then a ``warning:`` line per failed check."""
    def shown(value, form):
        return "n/a" if value is None else format(value, form)

    thresholds = details["thresholds"]
    print(f"diagnostics: divergences {shown(details['divergences'], 'd')}, "
          f"max R-hat {shown(details['max_rhat'], '.3f')}, "
          f"min bulk ESS {shown(details['min_ess'], '.0f')} "
          f"(flagged: R-hat > {thresholds['max_rhat']}, ESS < {thresholds['min_ess']}, "
          "any divergence, a chain at the tree-depth bound in more than "
          f"{thresholds['max_treedepth_share']:.0%} of its draws)", file=stream)
    for problem in details["problems"]:
        print(f"warning: {problem}", file=stream)


def _check_heldout(path, table, heldout_path, heldout):
    def width(values):
        return 1 if values.ndim == 1 else values.shape[1]

    if table.values.shape[1:] != heldout.values.shape[1:]:
        raise ValueError(
            f"{heldout_path}: {width(heldout.values)} columns, the data file {path} "
            f"{width(table.values)}; the held-out points need the same columns"
        )


def _fit_record(args, table, heldout, fit, wall_seconds, score):
    from dpgmm_ppl import __version__
    from dpgmm_ppl.arviz_io import _jsonable

    record = {
        "package_version": __version__,
        "data_file": os.path.abspath(args["path"]),
        "columns": table.columns,
        "num_points": int(table.values.shape[0]),
        "dim": 1 if table.values.ndim == 1 else int(table.values.shape[1]),
        "backend": fit.backend,
        "seed": args["seed"],
        "options": {k: v for k, v in args.items() if k not in ("path", "heldout")},
        "backend_options": _jsonable(fit.options),
        "wall_seconds": {
            "fit": wall_seconds,
            "compile": fit.timing.get("compile_seconds"),
            "run": fit.timing.get("run_seconds"),
        },
    }
    record.update(summarize(fit))
    record.update(diagnostics_record(fit))
    if heldout is not None:
        record["heldout"] = {
            "file": os.path.abspath(args["heldout"]),
            "num_points": int(heldout.values.shape[0]),
            "mean_log_predictive_density": score,
        }
    return record


def _print_summary(record):
    times = record["wall_seconds"]
    print(f"{record['backend']}: {times['fit']:.1f} s (compile {times['compile'] or 0:.1f} s, "
          f"run {times['run'] or 0:.1f} s)")
    alpha = record["alpha"]
    if "value" in alpha:
        print(f"alpha: {alpha['value']:.4g}")
    else:
        interval = alpha["interval"]
        print(f"alpha: mean {alpha['mean']:.4g}, {interval['prob']:.0%} interval "
              f"[{interval['lower']:.4g}, {interval['upper']:.4g}]")
    clusters = record["num_clusters"]
    posterior = clusters.get("posterior")
    extra = "" if posterior is None else " (posterior: " + ", ".join(
        f"{n}: {p:.2f}" for n, p in posterior.items()) + ")"
    print(f"clusters above {clusters['threshold']:.0%} weight: {clusters['count']}{extra}")
    for row in record["components"]:
        loc = np.round(np.atleast_1d(row["loc"]), 4).tolist()
        print(f"  weight {row['weight']:.3f}  loc {loc}")
    if "heldout" in record:
        score = record["heldout"]["mean_log_predictive_density"]
        print("held-out mean log predictive density: "
              + ("-inf" if score is None else f"{score:.4f}") + " per point")


def run_fit(path, *, out_dir="fit-output", columns=None, heldout=None, backend="map",
            num_components=25, covariance="diag", num_chains=1, seed=0, num_steps=None,
            num_samples=None, num_warmup=None, quick=False, figures=True, force=False,
            progress_bar=True):
    """Fit ``backend`` to the data in ``path``; write ``fit.nc``, figures and ``summary.json``.

    Returns
    -------
    (Fit, dict)
        The fit and the summary written to ``summary.json``.
    """
    args = dict(locals())
    import dpgmm_ppl
    from dpgmm_ppl._validation import check_rng_key
    from dpgmm_ppl.options import check_counts

    options = backend_options(backend, quick=quick, progress_bar=progress_bar,
                              num_steps=num_steps, num_samples=num_samples, num_warmup=num_warmup)
    check_counts(num_components, num_chains, names=FLAGS)
    check_rng_key(seed)
    table = read_table(path, columns)
    held = None if heldout is None else read_table(heldout, columns, training=False)
    if held is not None:
        _check_heldout(path, table, heldout, held)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; --out needs a directory")
    data, table, figures = _spread_over_processes(table, figures)
    drawn, skipped = plan_figures(backend, table.values.shape, enabled=figures)
    # Any earlier output stops the command, also figures this fit would not
    # draw: left beside the new files, they would describe other data.
    check_outputs_free([out / name for name in OUTPUTS], force=force)
    for note in table.notes + ([] if held is None else held.notes):
        print(note, file=sys.stderr)

    start = time.perf_counter()
    fit = dpgmm_ppl.fit(data, backend=backend, rng_key=seed, num_components=num_components,
                        num_chains=num_chains, covariance=covariance, **options)
    wall_seconds = time.perf_counter() - start
    score = None if held is None else float(np.mean(fit.log_predictive_density(held.values)))
    if score is not None and not np.isfinite(score):
        score = None  # minus infinity, which JSON cannot hold: null

    record = _fit_record(args, table, held, fit, wall_seconds, score)
    record["figures"], record["figures_skipped"] = drawn, skipped
    import jax

    # Every process of a multi-process run holds the same fit: process 0 reports and writes.
    if jax.process_index() == 0:
        _print_summary(record)
        _print_diagnostics(record["diagnostics"], sys.stderr)
        _write_outputs(fit, record, out, drawn, progress_bar=progress_bar)
    return fit, record


def _spread_over_processes(table, figures):
    """``(data for fit, table, figures)``: with several JAX processes, this
    process's share of the rows as one global array, the table holding only
    the shape of the rows, and no figures (they need every point)."""
    import jax

    count = jax.process_count()
    if count == 1:
        return table.values, table, figures
    from dpgmm_ppl.sharding import data_mesh, process_local_data, spread_rows

    values = table.values
    mine = np.array(np.array_split(values, count)[jax.process_index()])
    data = process_local_data(mine, data_mesh())
    if figures and jax.process_index() == 0:
        print("figures: not drawn, the rows are spread over processes", file=sys.stderr)
    return data, table._replace(values=spread_rows(values.shape, values.dtype)), False


def _write_outputs(fit, record, out, drawn, *, progress_bar):
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    # Only with --force is there earlier output here (run_fit checked). Its
    # summary goes first, so that a summary always describes the files beside
    # it, and the figures this fit does not draw go too.
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    for name in FIGURES:
        if name not in drawn and (out / name).is_file():
            (out / name).unlink()
            print(f"removed {out / name} (a figure of the earlier fit)")
    steps = [(FIT_FILE, lambda: fit.save(out / FIT_FILE))]
    steps += [(name, lambda name=name: write_figure(name, fit, out, names=record["columns"]))
              for name in drawn]
    steps.append((SUMMARY_FILE, lambda: write_text_atomic(
        out / SUMMARY_FILE, json.dumps(record, indent=2) + "\n")))
    written = []
    with tqdm(steps, desc="writing", unit="file", file=sys.stderr, disable=not progress_bar) as bar:
        for name, write in bar:
            bar.set_postfix_str(name, refresh=False)
            written.append(write())
    for path in written:
        print(f"wrote {path}")
