"""Write the figures and tables of the documentation into ``docs/figures/``.

The docs build never fits anything: it includes what this script wrote, and
the outputs are committed. Re-run it after a change that moves the numbers::

    .venv/bin/python docs/make_figures.py            # the settings the pages quote
    .venv/bin/python docs/make_figures.py --quick --out /tmp/figures  # a smoke run

The full run took 13 minutes on 2 shared CPU cores when it was last timed
whole, most of it the NUTS fit of the comparison; the comparison alone now
takes about 3 minutes. ``--only collapse``, ``--only compare`` or ``--only
labels`` redoes one group of outputs.

It writes

- ``compare-table.md``: the ``dpgmm_ppl.compare`` table on the seed data, with
  the settings and the machine it ran on (included by ``backends.md``);
- ``compare-density.png``: the predictive densities of the three backends;
- ``compare-weights.png``: the sorted weights of each backend;
- ``label-switching.png``, ``label-switching-relabelled.png`` and
  ``label-switching-report.txt``: four NUTS chains on 2,000 of the seed
  points, each left in its own order of the components, before and after
  ``dpgmm_ppl.labels.relabel(..., method="stephens")``;
- ``collapse.png`` and ``collapse.md``: the seed notebook's objective as it
  was, with the concentration held fixed, and with an inverse-gamma prior on
  the scales, against ``dpgmm_ppl.fit`` (MAP); the notebook's optimiser,
  number of components and steps throughout;
- ``cli-components.png``, ``cli-loss.png``, ``cli-trace.png`` and
  ``cli-commands.md``: what ``dpgmm-ppl fit`` writes for iris (four named
  columns), SVI and NUTS in ``--quick`` runs (``--only cli``, under a minute).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.scipy import stats  # noqa: E402

import dpgmm_ppl  # noqa: E402
from dpgmm_ppl import labels, plots  # noqa: E402
from dpgmm_ppl.datasets import seed_mixture  # noqa: E402

FIGURES = Path(__file__).resolve().parent / "figures"
DPI = 80

#: The settings the documentation quotes (``--quick`` shortens every run).
SETTINGS = {
    "num_components": 10,
    "num_chains": 2,
    "map": {"num_steps": 2000},
    "svi": {"num_steps": 3000, "num_samples": 300},
    "nuts": {"num_warmup": 200, "num_samples": 200},
}
QUICK_SETTINGS = {
    "num_components": 10,
    "num_chains": 2,
    "map": {"num_steps": 200},
    "svi": {"num_steps": 200, "num_samples": 50},
    "nuts": {"num_warmup": 30, "num_samples": 30, "max_tree_depth": 4, "num_init_steps": 50},
}
#: Draws of the label-switching example (``--quick`` uses 30 of each).
LABEL_SETTINGS = {"num_warmup": 200, "num_samples": 200}
#: The seed notebook's optimisation: Adam(0.05), 50 components, 10,000 steps.
NOTEBOOK_STEPS, NOTEBOOK_COMPONENTS, LEARNING_RATE = 10_000, 50, 0.05


def machine_line():
    """Where and with what the numbers were made."""
    # The 15-minute load average: how busy the (possibly shared) machine was.
    load = os.getloadavg()[2] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} CPU cores ({platform.machine()}, 15-minute load average "
        f"{load:.1f}), "
        f"{'float64' if jax.config.jax_enable_x64 else 'float32'}, "
        f"jax {jax.__version__}, numpyro {__import__('numpyro').__version__}, "
        f"Python {platform.python_version()}"
    )


def save(fig, out, name):
    path = out / name
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    shrink(path)
    print(f"wrote {path}")


def shrink(path):
    """Rewrite a PNG with a 256-colour palette: a third of the bytes, the same plot."""
    from PIL import Image

    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=256)
    palette.save(path, optimize=True)


# --------------------------------------------------------------------------
# MAP, SVI and NUTS side by side
# --------------------------------------------------------------------------


def table_markdown(table, settings, seconds):
    """The comparison as a markdown table, with the settings and the machine."""
    def cell(value, digits):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "-"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    rows = [
        "| backend | compile s | run s | wall s | held-out nats/point | components > 1% | alpha | ESS/s of lp | divergences |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for i, name in enumerate(table["backend"]):
        rows.append(
            f"| {name} | {cell(table['compile_seconds'][i], 1)} | {cell(table['run_seconds'][i], 1)} "
            f"| {cell(table['wall_seconds'][i], 1)} | {cell(table['heldout_log_density'][i], 4)} "
            f"| {cell(table['components_used'][i], 1)} | {cell(table['alpha'][i], 2)} "
            f"| {cell(table['ess_per_second_lp'][i], 2)} | {cell(table['divergences'][i], 0)} |"
        )
    options = "; ".join(
        f"{name}: " + ", ".join(f"`{k}={v}`" for k, v in settings[name].items())
        for name in ("map", "svi", "nuts")
    )
    return "\n".join(rows) + (
        f"\n\nSettings: `num_components={settings['num_components']}`, "
        f"`num_chains={settings['num_chains']}`, `rng_key=0`; {options}; other options at "
        f"their defaults. Held out: `seed_mixture().sample(2026)`, 19,000 fresh points "
        f"(the true mixture scores {settings['true_score']:.4f}). "
        f"Machine: {machine_line()}; `compare` took {seconds:.0f} s in all.\n"
    )


def comparison_figures(truth, heldout, settings, out):
    start = time.perf_counter()
    table = dpgmm_ppl.compare(
        truth.data,
        heldout=heldout,
        rng_key=0,
        num_components=settings["num_components"],
        num_chains=settings["num_chains"],
        backend_options={name: settings[name] for name in ("map", "svi", "nuts")},
    )
    seconds = time.perf_counter() - start
    print(table.to_string())
    print(f"compare: {seconds:.1f} s")
    (out / "compare-table.md").write_text(table_markdown(table, settings, seconds))

    ax = plots.plot_predictive_comparison(table.fits)
    save(ax.figure, out, "compare-density.png")

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharey=True)
    true_weights = np.sort(truth.weights)[::-1]
    for ax, (name, fit) in zip(axes, table.fits.items()):
        plots.plot_weights(fit, ax=ax)
        ax.plot(true_weights, "x", color="k", ms=8, label="true weights")
        if name == "map":
            ax.set_title(f"map: best of {fit.num_chains} restarts")
        else:
            ax.set_title(f"{name}: {fit.num_chains} chains x {fit.num_draws} draws")
            ax.set_ylabel("")
        ax.legend(fontsize="small")
        ax.set_xlim(-0.5, fit.num_components - 0.5)
    save(fig, out, "compare-weights.png")

    return table


# --------------------------------------------------------------------------
# Label switching: NUTS chains left in the orders their starts gave them
# --------------------------------------------------------------------------


def label_figures(truth, out, *, is_quick):
    """NUTS on 2,000 of the seed points, four chains not aligned before sampling.

    ``num_init_steps=0`` skips the descent and sorting of the starts, so each
    chain keeps the order of the components its k-means++ seeding gave it
    (the set-up of ``examples/posterior_diagnostics.ipynb`` in its quick mode).
    """
    start = time.perf_counter()
    subset = np.random.default_rng(0).choice(truth.data.size, 2000, replace=False)
    draws = {"num_warmup": 30, "num_samples": 30} if is_quick else LABEL_SETTINGS
    fit = dpgmm_ppl.fit(
        truth.data[subset], backend="nuts", num_components=5, num_chains=4, rng_key=1,
        num_init_steps=0, **draws,
    )
    report = labels.label_switching_report(fit)
    relabelled = labels.relabel(fit, method="stephens")
    for each, name in ((fit, "label-switching.png"), (relabelled, "label-switching-relabelled.png")):
        axes = plots.plot_label_switching(each, num_leading=3)
        axes[-1].ticklabel_format(axis="y", useOffset=False)
        save(axes[0].figure, out, name)
    options = ", ".join(f"{k}={v}" for k, v in draws.items())
    hardware, software = machine_line().split("), ", 1)
    (out / "label-switching-report.txt").write_text(
        f"# NUTS on 2,000 of the seed points: num_components=5, num_chains=4,\n"
        f"# rng_key=1, num_init_steps=0, {options}\n"
        f"# {time.perf_counter() - start:.0f} s with the relabelling, on {hardware})\n"
        f"# {software}\n\n" + report.to_string() + "\n"
    )
    print(report.to_string())


# --------------------------------------------------------------------------
# What the command line writes, for data with named columns
# --------------------------------------------------------------------------

#: The ``dpgmm-ppl fit`` runs of the CLI page, and the figures each one shows there.
CLI_RUNS = {
    "svi": (["--backend", "svi", "--covariance", "full", "--num-components", "8"],
            ("components.png", "loss.png")),
    "nuts": (["--backend", "nuts", "--num-components", "6", "--num-chains", "2"], ("trace.png",)),
}


def cli_figures(out):
    """``dpgmm-ppl fit iris.csv`` with ``--quick``: the pair plot and the loss of SVI,
    the trace of two NUTS chains, copied as the command wrote them."""
    import shutil
    import tempfile

    from sklearn.datasets import load_iris

    from dpgmm_ppl.cli import main as cli

    iris = load_iris()
    commands = []
    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "iris.csv"
        lines = [",".join(iris.feature_names)]
        lines += [",".join(f"{value:g}" for value in row) for row in iris.data]
        csv.write_text("\n".join(lines) + "\n")
        for backend, (options, names) in CLI_RUNS.items():
            argv = ["fit", str(csv), *options, "--quick", "--seed", "0", "--no-progress"]
            code = cli(argv + ["--out", str(Path(folder) / backend)])
            if code != 0:
                raise RuntimeError(f"dpgmm-ppl {' '.join(argv)} exited with {code}")
            commands.append(f"dpgmm-ppl {' '.join(['fit', 'iris.csv', *options, '--quick'])}")
            for name in names:
                target = out / f"cli-{name}"
                shutil.copyfile(Path(folder) / backend / name, target)
                shrink(target)
                print(f"wrote {target}")
    (out / "cli-commands.md").write_text(
        "```bash\n" + "\n".join(commands) + "\n```\n\n"
        f"`iris.csv`: the 150 flowers of `sklearn.datasets.load_iris()`, with its four "
        f"column names as the header. Machine: {machine_line()}.\n"
    )


# --------------------------------------------------------------------------
# The seed notebook's objective, and what breaks it
# --------------------------------------------------------------------------


def notebook_loss(params, x, *, num_scored_sticks=25, scale_prior=None):
    """Minus the seed notebook's objective: a stick-breaking term plus the raw likelihood.

    As in the notebook: only the first ``num_scored_sticks`` stick fractions
    are scored under Beta(1, alpha), with no prior on alpha, the locations
    or the scales, and the mixture is summed in probability space.
    ``scale_prior=(a, b)`` adds an inverse-gamma log density on each scale.
    """
    log_weights, log_alpha, loc, log_scale = params
    weights = jax.nn.softmax(log_weights)
    remaining = 1.0 - (jnp.cumsum(weights) - weights)
    sticks = (weights / remaining)[:num_scored_sticks]
    objective = jnp.sum(stats.beta.logpdf(sticks, 1.0, jnp.exp(log_alpha)))
    scale = jnp.exp(log_scale)
    objective += jnp.sum(jnp.log(stats.norm.pdf(x[:, None], loc, scale) @ weights))
    if scale_prior is not None:
        shape, rate = scale_prior
        objective += jnp.sum(-(shape + 1.0) * log_scale - rate / scale)
    return -objective


def run_notebook(x, num_steps, num_components, *, is_alpha_fixed=False, scale_prior=None):
    """Adam(0.05) on :func:`notebook_loss` from the notebook's unit-normal starts.

    Returns, before each step, the loss, the smallest of all component
    scales (the collapsing component may carry almost no weight) and log alpha.
    """
    keys = jax.random.split(jax.random.PRNGKey(42), 4)
    shapes = ((num_components,), (1,), (num_components,), (num_components,))
    params = tuple(jax.random.normal(k, s) for k, s in zip(keys, shapes))
    optimizer = optax.adam(LEARNING_RATE)

    def loss(params):
        if is_alpha_fixed:
            params = (params[0], jax.lax.stop_gradient(params[1]), *params[2:])
        return notebook_loss(params, x, scale_prior=scale_prior)

    def step(state, _):
        params, opt_state = state
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        trace = (value, jnp.min(jnp.exp(params[3])), params[1][0])
        return (optax.apply_updates(params, updates), opt_state), trace

    run = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), None, length=num_steps)[1])
    return tuple(np.asarray(v) for v in run(params))


def first_non_finite(values):
    bad = np.flatnonzero(~np.isfinite(values))
    return int(bad[0]) + 1 if bad.size else None


def collapse_figure(truth, num_steps, out):
    start = time.perf_counter()
    x = jnp.asarray(truth.data)
    # The package's default scale prior, resolved on the data: InverseGamma(2, sd / 2).
    scale_prior = (2.0, 0.5 * float(np.std(truth.data)))
    variants = {
        "notebook": {},
        "notebook, alpha held at its start": {"is_alpha_fixed": True},
        "notebook + inverse-gamma prior on scales": {"scale_prior": scale_prior},
    }
    runs = {
        name: run_notebook(x, num_steps, NOTEBOOK_COMPONENTS, **options)
        for name, options in variants.items()
    }
    ours = dpgmm_ppl.fit(truth.data, num_components=NOTEBOOK_COMPONENTS, num_steps=num_steps)

    steps = np.arange(1, num_steps + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    rows = [
        "| run | first NaN loss | smallest scale reached | log alpha at the end or at the NaN |",
        "|---|--:|--:|--:|",
    ]
    for i, (name, (losses, smallest, log_alpha)) in enumerate(runs.items()):
        nan_step = first_non_finite(losses)
        last = (nan_step or num_steps) - 1
        label = f"{name} (NaN at {nan_step:,})" if nan_step else f"{name} (finite)"
        left.semilogy(steps, smallest, color=f"C{i}", label=label)
        right.plot(steps, log_alpha, color=f"C{i}", label=label)
        for ax in (left, right):
            if nan_step:
                ax.axvline(nan_step, color=f"C{i}", ls=":", lw=1)
        finite = smallest[np.isfinite(smallest)]
        rows.append(
            f"| {name} | {f'step {nan_step:,}' if nan_step else 'none'} "
            f"| {finite.min():.2g} | {log_alpha[last]:.1f} |"
        )
    ours_smallest = ours.history["scale"][0].min(axis=-1)
    ours_label = "dpgmm_ppl.fit, MAP (finite)" if np.all(np.isfinite(ours.losses)) else "dpgmm_ppl.fit, MAP"
    left.semilogy(ours.history_steps, ours_smallest, color="k", label=ours_label)
    right.plot(ours.history_steps, np.log(ours.history["alpha"][0]), color="k", label=ours_label)
    rows.append(
        f"| dpgmm_ppl.fit (MAP) | {first_non_finite(ours.losses) or 'none'} "
        f"| {ours_smallest.min():.2g} | {float(np.log(ours.samples['alpha'][0, 0])):.1f} |"
    )
    left.axhline(float(np.min(truth.scale)), color="gray", ls="--", lw=1, label="smallest true scale")
    left.set_ylabel("smallest of the 50 scales")
    left.set_title("the smallest component scale")
    right.set_ylabel("log alpha")
    right.set_title("the concentration")
    for ax in (left, right):
        ax.set_xlabel("step")
    handles, labels_ = left.get_legend_handles_labels()
    fig.legend(handles, labels_, loc="lower center", ncol=3, fontsize="small",
               bbox_to_anchor=(0.5, -0.12), frameon=False)
    save(fig, out, "collapse.png")

    summary = "\n".join(rows) + (
        f"\n\nAdam(0.05), {NOTEBOOK_COMPONENTS} components, {num_steps:,} steps, float32; "
        f"the inverse-gamma prior is InverseGamma({scale_prior[0]:g}, {scale_prior[1]:.3f}), the "
        f"package's default on these data. All four runs took "
        f"{time.perf_counter() - start:.0f} s on {machine_line()}.\n"
    )
    (out / "collapse.md").write_text(summary)
    print(summary)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--only", choices=("collapse", "compare", "labels", "cli"),
                        help="write one group of outputs only")
    parser.add_argument("--out", type=Path, default=FIGURES, help=f"output folder (default {FIGURES})")
    args = parser.parse_args(argv)
    settings = dict(QUICK_SETTINGS if args.quick else SETTINGS)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    truth = seed_mixture()
    heldout = truth.sample(2026).data
    settings["true_score"] = float(np.mean(truth.log_density(heldout)))
    if args.only in (None, "collapse"):
        collapse_figure(truth, 1000 if args.quick else NOTEBOOK_STEPS, out)
    if args.only in (None, "compare"):
        comparison_figures(truth, heldout, settings, out)
    if args.only in (None, "labels"):
        label_figures(truth, out, is_quick=args.quick)
    if args.only in (None, "cli"):
        cli_figures(out)
    print(f"{time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
