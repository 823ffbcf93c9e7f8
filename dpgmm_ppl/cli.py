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
    try:
        yield
    finally:
        done.set()
        thread.join()
        stream.write(f"{message}: done in {time.perf_counter() - start:.1f} s\n")
        stream.flush()


def run_demo(out_dir, *, num_steps=10_000, num_components=50, num_chains=1, seed=0):
    """Fit MAP to the seed data, print a summary, write figures; return the fit."""
    import numpy as np

    import dpgmm_ppl
    from dpgmm_ppl import plots
    from dpgmm_ppl.datasets import seed_mixture

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
    return parser


def main(argv=None):
    """Entry point of the ``dpgmm-ppl`` command."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        run_demo(
            args.out,
            num_steps=args.num_steps,
            num_components=args.num_components,
            num_chains=args.num_chains,
            seed=args.seed,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
