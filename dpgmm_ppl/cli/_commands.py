"""``dpgmm-ppl demo`` and ``dpgmm-ppl compare``."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

from dpgmm_ppl.cli._figures import save_figure, write_figure
from dpgmm_ppl.cli._files import load_table, write_text_atomic

__all__ = ["FLAGS", "QUICK_OPTIONS", "progress", "quick_options", "run_compare", "run_demo"]

#: The flags of the arguments the commands pass on, by the name that
#: :func:`dpgmm_ppl.fit` gives them: an error names the flag the user typed.
FLAGS = {name: "--" + name.replace("_", "-")
         for name in ("num_components", "num_chains", "num_steps", "num_samples", "num_warmup")}


def _registered_quick_options():
    from dpgmm_ppl.infer import BACKENDS

    return {name: dict(backend.quick_options) for name, backend in BACKENDS.items()}


#: Short runs for `dpgmm-ppl compare --quick` and `dpgmm-ppl fit --quick`: a
#: copy of each registered backend's ``quick_options``, which a test may shorten.
QUICK_OPTIONS = _registered_quick_options()


def quick_options(name):
    """The ``--quick`` options of backend ``name``: those of :data:`QUICK_OPTIONS`,
    or, for a backend registered since, its own ``quick_options``."""
    if name in QUICK_OPTIONS:
        return dict(QUICK_OPTIONS[name])
    from dpgmm_ppl.infer import get_backend

    return dict(get_backend(name).quick_options)


#: What `dpgmm-ppl demo` draws: the 1-d MAP figures.
DEMO_FIGURES = ("density.png", "weights.png", "loss.png", "training.gif")


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


def run_demo(out_dir, *, num_steps=10_000, num_components=50, num_chains=1, seed=0,
             progress_bar=True):
    """Fit MAP to the seed data, print a summary, write figures; return the fit."""
    import numpy as np

    import dpgmm_ppl
    from dpgmm_ppl._validation import check_rng_key
    from dpgmm_ppl.datasets import seed_mixture
    from dpgmm_ppl.options import check_counts, resolve_options

    # Refused here, before anything is written to stderr, so that an error is one line.
    resolve_options("map", {"num_steps": num_steps, "progress_bar": progress_bar}, names=FLAGS)
    check_counts(num_components, num_chains, names=FLAGS)
    check_rng_key(seed)
    truth = seed_mixture()
    heldout = truth.sample(2026)
    print(f"MAP: Adam(0.05), {num_steps} steps, {num_components} components", file=sys.stderr)
    fit = dpgmm_ppl.fit(
        truth.data,
        backend="map",
        rng_key=seed,
        num_components=num_components,
        num_chains=num_chains,
        num_steps=num_steps,
        progress_bar=progress_bar,
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
        + ", ".join(f"({weight:.3f}, {mean:g}, {sd:g})"
                    for weight, mean, sd in zip(truth.weights, truth.loc, truth.scale))
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with progress(f"Writing figures to {out}"):
        paths = [write_figure(name, fit, out) for name in DEMO_FIGURES]
    for path in paths:
        print(f"wrote {path}")
    return fit


def run_compare(out_dir, path=None, *, columns=None, num_components=25, num_chains=4,
                seed=0, quick=False, force=False, progress_bar=True):
    """Compare every registered backend (MAP, SVI and NUTS) on a file or on the seed
    data; write table, figure, netCDF."""
    import json

    import numpy as np

    import dpgmm_ppl
    from dpgmm_ppl import plots
    from dpgmm_ppl._validation import check_rng_key, check_training_data
    from dpgmm_ppl.datasets import seed_mixture
    from dpgmm_ppl.infer import BACKENDS
    from dpgmm_ppl.options import check_counts

    out = Path(out_dir)
    if out.exists() and any(out.glob("compare*")) and not force:
        raise ValueError(f"{out} already holds comparison output; pass --force to overwrite")
    heldout = None
    if path is None:
        truth = seed_mixture()
        data, heldout = truth.data, truth.sample(2026).data
    else:
        data = load_table(path, columns)
    # Refused here, before anything is written to stderr, so that an error is one line.
    data = check_training_data(data)
    check_counts(num_components, num_chains, names=FLAGS)
    check_rng_key(seed)
    out.mkdir(parents=True, exist_ok=True)
    options = {
        name: {**(quick_options(name) if quick else {}), "progress_bar": progress_bar}
        for name in BACKENDS
    }
    print("Comparing " + ", ".join(name.upper() for name in options), file=sys.stderr)
    table = dpgmm_ppl.compare(
        data, backends=tuple(options), heldout=heldout, rng_key=seed,
        num_components=num_components, num_chains=num_chains, backend_options=options,
    )
    text = table.to_string()
    print(text)
    written = [write_text_atomic(out / "compare.txt", text + "\n")]
    written.append(write_text_atomic(out / "compare.json", json.dumps(dict(table), indent=2)))
    for name, fit in table.fits.items():
        written.append(fit.save(out / f"compare-{name}.nc"))
    if np.ndim(data) == 1:
        ax = plots.plot_predictive_comparison(table.fits)
        figure_path = out / "compare-density.png"
        written.append(save_figure(ax.figure, figure_path, dpi=100, bbox_inches="tight"))
    for item in written:
        print(f"wrote {item}")
    return table
