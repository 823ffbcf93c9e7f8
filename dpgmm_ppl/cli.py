"""The ``dpgmm-ppl`` console command.

``dpgmm-ppl demo`` fits MAP to the seed data with the notebook's settings
(Adam at 0.05, 10,000 steps, 50 components), prints a summary and writes the
figures.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time

__all__ = ["main"]


@contextlib.contextmanager
def progress(message, stream=None):
    """Show ``message`` with a ticking elapsed time while a long call runs."""
    stream = sys.stderr if stream is None else stream
    done = threading.Event()
    start = time.perf_counter()
    interactive = stream.isatty()

    def tick():
        while not done.wait(1.0 if interactive else 10.0):
            elapsed = time.perf_counter() - start
            end = "\r" if interactive else "\n"
            stream.write(f"{message} ... {elapsed:5.0f} s{end}")
            stream.flush()

    stream.write(f"{message} ...\n")
    stream.flush()
    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    outcome = "failed after"
    try:
        yield
        outcome = "done in"
    finally:
        done.set()
        thread.join()
        stream.write(f"{message}: {outcome} {time.perf_counter() - start:.1f} s\n")
        stream.flush()


def run_demo(out_dir, *, num_steps=10_000, num_components=50, num_chains=1, seed=0):
    """Fit MAP to the seed data, print a summary, write figures; return the fit."""
    import numpy as np

    import dpgmm_ppl
    from dpgmm_ppl import plots
    from dpgmm_ppl._validation import check_positive_int, check_rng_key
    from dpgmm_ppl.datasets import seed_mixture

    # Refused here, before the progress line, so that an error is one line.
    for option, value in (("--num-steps", num_steps), ("--num-components", num_components),
                          ("--num-chains", num_chains)):
        check_positive_int(option, value)
    check_rng_key(seed)
    truth = seed_mixture()
    heldout = truth.sample(2026)
    with progress(f"MAP: Adam(0.05), {num_steps} steps, {num_components} components"):
        fit = dpgmm_ppl.fit(
            truth.data,
            backend="map",
            rng_key=seed,
            num_components=num_components,
            num_chains=num_chains,
            num_steps=num_steps,
        )
    chain = fit.best_chain
    score = float(np.mean(fit.log_predictive_density(heldout.data)))
    true_score = float(np.mean(truth.log_density(heldout.data)))
    weights = fit.samples["weights"][chain, 0]
    print(f"time: compile {fit.timing['compile_seconds']:.1f} s, run {fit.timing['run_seconds']:.1f} s")
    print(f"final loss (minus log joint): {fit.losses[chain, -1]:.2f}")
    print(
        f"held-out mean log density: {score:.4f} per point "
        f"(true mixture {true_score:.4f}, gap {true_score - score:.4f} nats)"
    )
    print(f"alpha: {fit.samples['alpha'][chain, 0]:.3f}")
    print("components above 1% weight (weight, loc, scale):")
    for k in np.argsort(-weights):
        if weights[k] > 0.01:
            loc, scale = fit.samples["loc"][chain, 0, k], fit.samples["scale"][chain, 0, k]
            print(f"  {weights[k]:6.3f}  {loc:7.3f}  {scale:6.3f}")
    print(
        "true components (weight, loc, scale): "
        + ", ".join(f"({w:.3f}, {l:g}, {s:g})" for w, l, s in zip(truth.weights, truth.loc, truth.scale))
    )
    with progress(f"Writing figures to {out_dir}"):
        paths = plots.save_figures(fit, out_dir)
    for path in paths:
        print(f"wrote {path}")
    return fit


def load_table(path, columns=None):
    """Read a CSV with a header row, or an NPY array, into a float array.

    Raises ``ValueError`` with one clear line for a missing, empty, non-numeric
    or ragged file, or an NPY file holding pickled objects.
    """
    from pathlib import Path

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"{path}: not a plain numeric NPY array ({error})") from None
        if columns:
            raise ValueError("--columns applies to CSV files only")
        return array
    import csv
    import math

    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header row and at least one data row")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    wanted = list(range(len(header)))
    if columns:
        missing = [name for name in columns if name not in header]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}; the header has {header}")
        wanted = [header.index(name) for name in columns]
    values = []
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: line {number} has {len(row)} fields, the header has {len(header)}"
            )
        try:
            values.append([float(row[j]) for j in wanted])
        except ValueError:
            raise ValueError(f"{path}: line {number} holds a non-numeric value") from None
        if not all(math.isfinite(value) for value in values[-1]):
            raise ValueError(f"{path}: line {number} holds a non-finite value (nan or inf)")
    array = np.asarray(values)
    return array[:, 0] if array.shape[1] == 1 else array


def run_compare(out_dir, path=None, *, columns=None, num_components=25, num_chains=4,
                seed=0, quick=False, force=False):
    """Compare MAP, SVI and NUTS on a file or on the seed data; write table, figure, netCDF."""
    import json
    from pathlib import Path

    import numpy as np

    import dpgmm_ppl
    from dpgmm_ppl import plots
    from dpgmm_ppl._validation import check_positive_int, check_rng_key, check_training_data
    from dpgmm_ppl.datasets import seed_mixture

    out = Path(out_dir)
    if out.exists() and any(out.glob("compare*")) and not force:
        raise ValueError(f"{out} already holds comparison output; pass --force to overwrite")
    heldout = None
    if path is None:
        truth = seed_mixture()
        data, heldout = truth.data, truth.sample(2026).data
    else:
        data = load_table(path, columns)
    # Refused here, before the progress line, so that an error is one line.
    data = check_training_data(data)
    check_positive_int("--num-components", num_components)
    check_positive_int("--num-chains", num_chains)
    check_rng_key(seed)
    out.mkdir(parents=True, exist_ok=True)
    options = QUICK_OPTIONS if quick else None
    with progress("Comparing MAP, SVI and NUTS"):
        table = dpgmm_ppl.compare(
            data, heldout=heldout, rng_key=seed, num_components=num_components,
            num_chains=num_chains, backend_options=options,
        )
    text = table.to_string()
    print(text)
    written = [_write_atomic(out / "compare.txt", text + "\n")]
    written.append(_write_atomic(out / "compare.json", json.dumps(dict(table), indent=2)))
    for name, fit in table.fits.items():
        written.append(fit.save(out / f"compare-{name}.nc"))
    if np.ndim(data) == 1:
        import matplotlib.pyplot as plt

        ax = plots.plot_predictive_comparison(table.fits)
        figure_path = out / "compare-density.png"
        ax.figure.savefig(figure_path, dpi=100, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(figure_path)
    for item in written:
        print(f"wrote {item}")
    return table


#: Short runs for `dpgmm-ppl compare --quick` (and the test suite).
QUICK_OPTIONS = {
    "map": {"num_steps": 1000},
    "svi": {"num_steps": 1000, "num_samples": 200},
    "nuts": {"num_warmup": 100, "num_samples": 100, "max_tree_depth": 6, "num_init_steps": 300},
}


def _write_atomic(path, text):
    import os
    import tempfile

    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _parser():
    parser = argparse.ArgumentParser(
        prog="dpgmm-ppl", description="Dirichlet-process Gaussian mixtures in NumPyro."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit MAP to the seed data with the notebook's settings and plot it"
    )
    demo.add_argument("--out", default="demo-output", help="directory for the figures")
    demo.add_argument("--num-steps", type=int, default=10_000, help="gradient steps")
    demo.add_argument("--num-components", type=int, default=50, help="truncation level")
    demo.add_argument("--num-chains", type=int, default=1, help="MAP restarts")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--no-compare", action="store_true",
                      help="skip the MAP / SVI / NUTS comparison at the end")
    compare = commands.add_parser(
        "compare", help="fit MAP, SVI and NUTS side by side (seed data, or a CSV/NPY file)"
    )
    compare.add_argument("file", nargs="?", help="CSV with a header row, or NPY; default: seed data")
    compare.add_argument("--columns", nargs="+", help="CSV columns to use (default: all)")
    compare.add_argument("--out", default="compare-output", help="output directory")
    compare.add_argument("--num-components", type=int, default=25, help="truncation level")
    compare.add_argument("--num-chains", type=int, default=4, help="chains / restarts")
    compare.add_argument("--seed", type=int, default=0, help="random seed")
    compare.add_argument("--quick", action="store_true", help="short runs, for a first look")
    compare.add_argument("--force", action="store_true", help="overwrite earlier output")
    return parser


def main(argv=None):
    """Entry point of the ``dpgmm-ppl`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            run_demo(
                args.out,
                num_steps=args.num_steps,
                num_components=args.num_components,
                num_chains=args.num_chains,
                seed=args.seed,
            )
            if not args.no_compare and _has_posterior_backends():
                # Short runs keep the demo to a few minutes; `dpgmm-ppl compare`
                # runs the backends at their defaults.
                run_compare(args.out, seed=args.seed, force=True, quick=True, num_chains=2)
        elif args.command == "compare":
            run_compare(
                args.out, args.file, columns=args.columns, num_components=args.num_components,
                num_chains=args.num_chains, seed=args.seed, quick=args.quick, force=args.force,
            )
    except (ValueError, TypeError) as error:
        print(f"dpgmm-ppl {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def _has_posterior_backends():
    from dpgmm_ppl.infer import BACKENDS

    return {"svi", "nuts"} <= set(BACKENDS)


if __name__ == "__main__":
    sys.exit(main())
