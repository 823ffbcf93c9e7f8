"""Effective samples per second of NUTS: dpgmm_ppl against a stock NumPyro model.

Both samplers run in this one process on the seed data (the 19,000 points of
:func:`dpgmm_ppl.datasets.seed_mixture`), with the same number of components,
chains, warmup and draws.

``baseline``
    The DP-GMM written by hand in plain NumPyro (``_common.handwritten_dpgmm``:
    Gamma ``alpha``, Beta(1, alpha) sticks turned into log weights, Normal
    locations, inverse-gamma scales, ``MixtureSameFamily`` likelihood, with
    dpgmm_ppl's default priors resolved on the data) under
    ``MCMC(NUTS(model), num_warmup=W, num_samples=S, num_chains=C,
    chain_method="sequential")`` with NUTS's defaults (diagonal mass
    matrix, target acceptance 0.8, ``init_to_uniform``) and
    ``extra_fields=("potential_energy", "diverging", "num_steps")``;
    ``lp = -potential_energy``.

``defaults``
    ``dpgmm_ppl.fit(data, backend="nuts", num_components=K, num_chains=C,
    num_warmup=W, num_samples=S, rng_key=key)`` with no NUTS option: the
    package's defaults, which depend on the number of points
    (``size_defaults`` of ``dpgmm_ppl.infer.nuts``: on the 19,000 seed points
    a diagonal mass matrix, target acceptance 0.8, warmup trees of depth 8
    and the occupied sticks centred after a scouting warmup), starts
    descended from k-means++ seedings; chain method: the package's default,
    which is the only chain for C = 1 and ``"sequential"`` for C > 1 on one
    CPU device); ``lp`` from ``Fit.sample_stats``.

``options`` (only when an option flag is given)
    The same call with the options given on the command line
    (``--dense-mass``, ``--target-accept-prob``, ``--max-tree-depth``,
    ``--max-warmup-tree-depth``, ``--init-inverse-mass``,
    ``--centered-sticks``, ``--split-merge``, ``--energy-tolerance``, a
    float or ``none`` for plain leapfrog steps), printed after the defaults.

``pymc`` (only where PyMC is installed: ``pip install 'dpgmm-ppl[pymc]'``)
    The same model in PyMC (Beta sticks, ``NormalMixture``), ``pm.sample``
    with its defaults (NUTS, diagonal mass matrix, target 0.8); its
    compilation happens inside ``pm.sample`` and is not split out. Without
    PyMC the row is skipped with a note; ``--no-pymc`` skips it too.

Figures
    ESS: ``arviz.ess`` (bulk, rank-normalised, split chains, so it also works
    with one chain) of ``alpha`` and of ``lp`` over all chains. The two
    ``lp`` are each sampler's own log density of its unconstrained position,
    in different charts, so their ESS compare as mixing of the log density,
    not as the same number.
    Seconds: the wall time of the whole call, compilation included (ours:
    ``fit``, from the k-means++ starts to the returned ``Fit``; baseline:
    ``mcmc.run`` and ``get_samples``), with the compilation part measured
    apart (JAX's compile events, as ``Fit.timing`` does) and a second ESS/s
    without it. NUTS compiles inside the run, so there is no separate warm
    call; each sampler runs once per key (sampling is too slow to repeat).
    ``ratio = ours / baseline``: for ESS/s, above 1.0 ours is better.
    Also printed: divergences after warmup, draws whose tree stopped at an
    irreversible step (``irrev``, ours only), mean leapfrog steps per draw
    (ours: ``n_leapfrog``, halved steps and reversibility tests included)
    and the posterior mean of ``alpha``.

This is slow: at K = 25 each draw may take about 1,000 leapfrog steps
(19,000 points each), so the default W = S = 500, C = 1 takes hours on two
CPU cores. ``--quick`` runs K = 4, W = S = 100.

Run ``python benchmarks/nuts_ess.py`` (K = 25, key 0),
``python benchmarks/nuts_ess.py --rng-keys 0 1 2 3`` (the four keys of the
acceptance: the medians over keys and the count of runs without a
divergence are printed at the end), or ``python benchmarks/nuts_ess.py
--quick``; ``--num-warmup``, ``--num-samples``, ``--num-chains``,
``--num-components`` override. PyMC runs with the first key only (it takes
the longest). The four-chain check of the acceptance is
``python benchmarks/nuts_ess.py --num-chains 4 --no-baseline --no-pymc
--rng-keys 0 1 2 3``: with more than one chain each row of ours is followed
by its ``Fit.diagnostics()`` (divergences, irreversible stops, max R-hat and
min ESS of ``alpha``, ``lp`` and the log density at the data's 10/50/90 %
quantiles).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings

import arviz
import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (  # noqa: E402
    default_priors,
    handwritten_dpgmm,
    print_header,
    ratio,
    sample_pymc,
)

import dpgmm_ppl  # noqa: E402
from dpgmm_ppl.datasets import seed_mixture  # noqa: E402

try:  # the package's timer of JAX's compile events, as used for Fit.timing
    from dpgmm_ppl.infer._common import CompileTimer as _CompileTimer  # noqa: E402
except ImportError:  # pragma: no cover - private helper moved or renamed
    _CompileTimer = None


def ess(values):
    """Bulk ESS of a ``(chain, draw)`` array; NaN if ArviZ cannot compute it."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        return float("nan")
    try:
        return float(arviz.ess(values, method="bulk"))
    except Exception as error:  # noqa: BLE001 - report, do not abort the benchmark
        print(f"  arviz.ess failed: {error}")
        return float("nan")


class _NoTimer:
    seconds = float("nan")

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def compile_timer():
    return _CompileTimer() if _CompileTimer is not None else _NoTimer()


def run_ours(data, args, options):
    """``dpgmm_ppl.fit`` with the NUTS ``options`` given (none: the defaults)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        result = dpgmm_ppl.fit(
            data, backend="nuts", num_components=args.num_components,
            num_chains=args.num_chains, num_warmup=args.num_warmup,
            num_samples=args.num_samples, rng_key=args.rng_key, **options,
        )
        wall = time.perf_counter() - start
    stats = result.sample_stats
    return {
        "alpha": result.samples["alpha"],
        "lp": stats["lp"],
        "wall": wall,
        "compile": result.timing["compile_seconds"],
        "diverging": int(np.sum(stats["diverging"])),
        "irreversible": int(np.sum(stats["irreversible"])),
        "steps": float(np.mean(stats["n_leapfrog"])),
        "warnings": [str(w.message) for w in caught],
        "diagnostics": result.diagnostics() if args.num_chains > 1 else None,
    }


def run_baseline(data, args):
    model = functools.partial(
        handwritten_dpgmm, num_components=args.num_components, priors=default_priors(data)
    )
    mcmc = MCMC(
        NUTS(model), num_warmup=args.num_warmup, num_samples=args.num_samples,
        num_chains=args.num_chains, chain_method="sequential", progress_bar=False,
    )
    data = jax.numpy.asarray(data)
    start = time.perf_counter()
    with compile_timer() as timer:
        mcmc.run(jax.random.PRNGKey(args.rng_key), data,
                 extra_fields=("potential_energy", "diverging", "num_steps"))
        samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall = time.perf_counter() - start
    extra = mcmc.get_extra_fields(group_by_chain=True)
    return {
        "alpha": np.asarray(samples["alpha"]),
        "lp": -np.asarray(extra["potential_energy"]),
        "wall": wall,
        "compile": timer.seconds,
        "diverging": int(np.sum(extra["diverging"])),
        "steps": float(np.mean(extra["num_steps"])),
        "warnings": [],
    }


def run_pymc(data, args):
    """The same model in PyMC (``pm.sample``, its NUTS, its defaults); ``None`` without PyMC."""
    result = sample_pymc(
        data, num_components=args.num_components, priors=default_priors(data),
        num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains,
        rng_key=args.rng_key,
    )
    if result is None:
        return None
    return {
        "alpha": result["alpha"],
        "lp": result["lp"],
        "wall": result["wall"],
        "compile": float("nan"),  # PyMC compiles its C code inside pm.sample
        "diverging": int(result["diverging"].sum()),
        "steps": float(result["n_steps"].mean()),
        "warnings": [],
    }


OPTION_NAMES = ("max_tree_depth", "max_warmup_tree_depth", "target_accept_prob", "dense_mass",
                "init_inverse_mass", "centered_sticks", "split_merge", "energy_tolerance")


def run_key(data, args, key):
    """Every sampler of one row group, with ``key``: baseline, ours at the
    defaults, ours with the options given (if any), PyMC (first key only)."""
    keyed = argparse.Namespace(**{**vars(args), "rng_key": key})
    sides = [] if args.no_baseline else [("baseline", run_baseline(data, keyed))]
    sides.append(("defaults", run_ours(data, keyed, {})))
    if args.options:
        sides.append(("options", run_ours(data, keyed, args.options)))
    if not args.no_pymc and key == args.rng_keys[0]:
        pymc = run_pymc(data, keyed)
        if pymc is not None:
            sides.append(("pymc", pymc))
    for _, side in sides:
        side.update(ess_alpha=ess(side["alpha"]), ess_lp=ess(side["lp"]),
                    run_only=side["wall"] - side["compile"])
    return dict(sides)


def print_rows(key, sides):
    head = (f"{'key':>3} {'':<9} {'wall s':>8} {'compile s':>10} {'ESS alpha':>10} {'ESS lp':>8} "
            f"{'ESS/s alpha':>12} {'ESS/s lp':>9} {'ESS/s alpha*':>13} {'ESS/s lp*':>10} "
            f"{'diverging':>10} {'irrev':>6} {'steps/draw':>11} {'mean alpha':>11}")
    print(head)
    print("-" * len(head))
    for name, s in sides.items():
        print(f"{key:>3} {name:<9} {s['wall']:>8.1f} {s['compile']:>10.1f} {s['ess_alpha']:>10.1f} "
              f"{s['ess_lp']:>8.1f} {s['ess_alpha'] / s['wall']:>12.3f} "
              f"{s['ess_lp'] / s['wall']:>9.3f} {s['ess_alpha'] / s['run_only']:>13.3f} "
              f"{s['ess_lp'] / s['run_only']:>10.3f} {s['diverging']:>10d} "
              f"{s.get('irreversible', '-'):>6} "
              f"{s['steps']:>11.1f} {float(np.mean(s['alpha'])):>11.3f}")
    for name, s in sides.items():
        if s.get("diagnostics") is not None:
            print(f"{key:>3} {name:<9} {s['diagnostics']}")
    base = sides.get("baseline")
    for name, s in sides.items():
        if base is None or name == "baseline":
            continue
        print(f"{key:>3} {name + '/base':<13} wall {ratio(s['wall'], base['wall'])}, "
              f"ESS/s alpha {ratio(s['ess_alpha'] / s['wall'], base['ess_alpha'] / base['wall'])}, "
              f"lp {ratio(s['ess_lp'] / s['wall'], base['ess_lp'] / base['wall'])}")
    for message in sides["defaults"]["warnings"]:
        print(f"    ours (defaults) warned: {message}")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="K = 4, W = S = 100 unless given (a minute or two)")
    parser.add_argument("--num-components", type=int, default=None, help="K (default 25; quick 4)")
    parser.add_argument("--num-warmup", type=int, default=None, help="W (default 500; quick 100)")
    parser.add_argument("--num-samples", type=int, default=None, help="S (default 500; quick 100)")
    parser.add_argument("--num-chains", type=int, default=1, help="C (default 1)")
    parser.add_argument("--max-tree-depth", type=int, default=None,
                        help="the options row: NUTS's max_tree_depth")
    parser.add_argument("--max-warmup-tree-depth", type=int, default=None,
                        help="the options row: the depth bound during warmup")
    parser.add_argument("--target-accept-prob", type=float, default=None,
                        help="the options row: target acceptance")
    parser.add_argument("--dense-mass", choices=("auto", "true", "false"), default=None,
                        help="the options row: dense mass matrix")
    parser.add_argument("--init-inverse-mass", choices=("hessian", "identity"), default=None,
                        help="the options row: the first inverse mass matrix")
    parser.add_argument("--centered-sticks", default=None,
                        help="the options row: 'auto' or an int")
    parser.add_argument("--split-merge", type=int, default=None,
                        help="the options row: split-merge proposals per transition")
    parser.add_argument("--energy-tolerance", default=None,
                        help="the options row: a float, or 'none' for plain leapfrog steps")
    parser.add_argument("--rng-keys", type=int, nargs="+", default=[0],
                        help="one row group per key, every sampler with that key (default: 0); "
                             "with several, the medians over keys are printed")
    parser.add_argument("--rng-key", type=int, default=None, help="the same as --rng-keys N")
    parser.add_argument("--no-pymc", action="store_true", help="skip PyMC even if installed")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the hand-written model (for the four-chain check: "
                             "--num-chains 4 prints Fit.diagnostics() of each row)")
    args = parser.parse_args(argv)
    if args.rng_key is not None:
        args.rng_keys = [args.rng_key]
    if args.centered_sticks not in (None, "auto"):
        try:
            args.centered_sticks = int(args.centered_sticks)
        except ValueError:
            parser.error(f"--centered-sticks: 'auto' or an int, got {args.centered_sticks!r}")
    if args.energy_tolerance is not None:
        tolerance = args.energy_tolerance
        args.energy_tolerance = "none" if tolerance == "none" else float(tolerance)
    if args.dense_mass is not None:
        args.dense_mass = {"auto": "auto", "true": True, "false": False}[args.dense_mass]
    args.options = {name: getattr(args, name) for name in OPTION_NAMES if getattr(args, name) is not None}
    if args.options.get("energy_tolerance") == "none":
        args.options["energy_tolerance"] = None
    quick_defaults = {"num_components": 4, "num_warmup": 100, "num_samples": 100}
    full_defaults = {"num_components": 25, "num_warmup": 500, "num_samples": 500}
    for name, value in (quick_defaults if args.quick else full_defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.num_components, args.num_samples, args.num_chains) < 1 or args.num_warmup < 0:
        parser.error("sizes must be positive (--num-warmup may be 0)")

    data = seed_mixture().data
    print_header(
        "NUTS effective samples per second: dpgmm_ppl vs a hand-written NumPyro model",
        f"mode: {'quick' if args.quick else 'full'}; seed data, {data.size} points; "
        f"K = {args.num_components}; C = {args.num_chains}; W = {args.num_warmup}; "
        f"S = {args.num_samples}; rng keys {args.rng_keys}; options row: {args.options or 'none'}",
    )
    results = {}
    for key in args.rng_keys:
        results[key] = run_key(data, args, key)
        print_rows(key, results[key])

    print("  defaults: dpgmm_ppl.fit with no NUTS option; options: the same with the options")
    print("  given; baseline: the hand-written model under stock MCMC(NUTS); pymc: PyMC's")
    print("  pm.sample (first key only). wall s: the whole call, compilation included; ESS/s")
    print("  uses it (columns with *: wall time less compilation). ESS: arviz.ess, bulk.")
    print("  lp is each sampler's log density in its own unconstrained chart, so the lp")
    print("  columns compare mixing, not values.")
    if args.no_pymc or not any("pymc" in sides for sides in results.values()):
        print("  PyMC: " + ("skipped (--no-pymc)." if args.no_pymc else
                          "not installed, skipped (pip install 'dpgmm-ppl[pymc]' to add it)."))

    if args.no_baseline:
        return

    def per_second(side, name):
        return side[f"ess_{name}"] / side["wall"]

    for row in ("defaults", "options") if args.options else ("defaults",):
        alpha = [per_second(r[row], "alpha") / per_second(r["baseline"], "alpha") for r in results.values()]
        lp = [per_second(r[row], "lp") / per_second(r["baseline"], "lp") for r in results.values()]
        clean = sum(r[row]["diverging"] == 0 for r in results.values())
        print(f"  {row}: median over {len(results)} key(s) of the ESS/s ratio against the "
              f"baseline: alpha {np.median(alpha):.2f}, lp {np.median(lp):.2f}; runs without a "
              f"divergence: {clean} of {len(results)}")
    alpha = np.median([per_second(r["defaults"], "alpha") / per_second(r["baseline"], "alpha")
                       for r in results.values()])
    lp = np.median([per_second(r["defaults"], "lp") / per_second(r["baseline"], "lp")
                    for r in results.values()])
    clean = sum(r["defaults"]["diverging"] == 0 for r in results.values())
    met = min(alpha, lp) >= 3 and clean >= 0.75 * len(results)
    print(f"  Target (issue 21): at the defaults, median ESS/s ratio >= 3 for alpha and lp, and no "
          f"divergence in 3 of 4 keys: {'met' if met else 'not met'}.")


if __name__ == "__main__":
    main()
