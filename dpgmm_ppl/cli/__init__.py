"""The ``dpgmm-ppl`` console command.

``dpgmm-ppl fit FILE`` fits one backend to a CSV or NPY file and writes the
fit (netCDF), a JSON summary and figures; ``dpgmm-ppl compare [FILE]`` puts
MAP, SVI and NUTS side by side; ``dpgmm-ppl demo`` fits MAP to the seed data
with the notebook's settings (Adam at 0.05, 10,000 steps, 50 components),
prints a summary and writes the figures.

A bad input file or option ends the command with one line on stderr and
exit status 2; an interrupted command (Ctrl-C) leaves no partly written
file and exits with status 130.
"""

from __future__ import annotations

import argparse
import sys

from dpgmm_ppl.cli._commands import (
    QUICK_OPTIONS,
    progress,
    quick_options,
    run_compare,
    run_demo,
)
from dpgmm_ppl.cli._files import load_table, read_table
from dpgmm_ppl.cli._fit import run_fit

__all__ = [
    "QUICK_OPTIONS",
    "load_table",
    "main",
    "progress",
    "read_table",
    "run_compare",
    "run_demo",
    "run_fit",
]

_FIT_EPILOG = """\
writes into --out:
  fit.nc        the fit as ArviZ netCDF (read it back with dpgmm_ppl.load)
  summary.json  backend, times, alpha, weights, components above 1% weight,
                number of clusters, divergences, max R-hat and min ESS,
                held-out score, data file, options, version
  *.png, *.gif  figures: density.png and training.gif for 1-d data,
                components.png (ellipses; a pair plot beyond 2 columns) for
                2 or more columns, loss.png for map and svi, trace.png for
                nuts, weights.png always; axes named after the CSV header
Existing files are never overwritten without --force.

example:
  dpgmm-ppl fit data.csv --backend nuts --num-chains 4 --out out/
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs laid out as written; the default of an option that has one in the help."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if default is None or isinstance(default, bool) or default is argparse.SUPPRESS:
            return text
        if action.option_strings and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _add_common(command, *, default_out, num_components, num_chains):
    command.add_argument("--out", default=default_out, metavar="DIR", help="output directory")
    command.add_argument("--num-components", type=int, default=num_components, metavar="K",
                         help="truncation level: the most components the mixture can use")
    command.add_argument("--num-chains", type=int, default=num_chains, metavar="C",
                         help="chains (NUTS) or independent restarts (MAP, SVI)")
    command.add_argument("--seed", type=int, default=0,
                         help="random seed; the same seed, the same fit")
    shown = command.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress_bar", action="store_const", const=True,
                       help="progress bars on stderr, the default when stderr is a terminal; "
                            "a NUTS fit, or a long MAP or SVI one, with a bar is compiled in "
                            "every process, since the compilation caches cannot keep the "
                            "bar's callbacks")
    shown.add_argument("--no-progress", dest="progress_bar", action="store_const", const=False,
                       help="no progress bars, the default when stderr is not a terminal")


def _add_fit(commands):
    from dpgmm_ppl.covariance import COVARIANCE_STRUCTURES
    from dpgmm_ppl.infer import BACKENDS

    fit = commands.add_parser(
        "fit", formatter_class=_Formatter, epilog=_FIT_EPILOG,
        help="fit one backend to a CSV or NPY file; write the fit, a JSON summary and figures",
        description="Fit the Dirichlet-process Gaussian mixture to the points in FILE.",
    )
    fit.add_argument("file", metavar="FILE", help="CSV with a header row (a pandas index "
                                                  "column is left out), or .npy array")
    fit.add_argument("--columns", nargs="+", metavar="NAME",
                     help="CSV columns to use, in order (default: all)")
    fit.add_argument("--backend", choices=tuple(BACKENDS), default="map",
                     help="; ".join(f"{name}: {backend.description or backend.kind}"
                                    for name, backend in BACKENDS.items()))
    fit.add_argument("--covariance", choices=tuple(COVARIANCE_STRUCTURES), default="diag",
                     help="covariance of each component (the same model for 1-d data)")
    _add_common(fit, default_out="fit-output", num_components=25, num_chains=1)
    fit.add_argument("--heldout", metavar="FILE",
                     help="CSV or NPY of held-out points, same columns; their mean log "
                          "predictive density goes into summary.json")
    for name, what in (("num_steps", "optimisation steps"), ("num_samples", "draws kept per chain"),
                       ("num_warmup", "warmup iterations")):
        fit.add_argument("--" + name.replace("_", "-"), type=int, metavar="N",
                         help=f"{what} ({_backend_defaults(name)})")
    quick = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in quick_options(name).items())
                      for name in BACKENDS)
    fit.add_argument("--quick", action="store_true",
                     help=f"short runs for a first look ({quick}); --num-* options still apply")
    fit.add_argument("--no-figures", dest="figures", action="store_false", help="write no figures")
    fit.add_argument("--force", action="store_true",
                     help="overwrite the output of an earlier fit in DIR")


def _backend_defaults(option):
    """``"map default 10000, svi default 3000"``: ``option``'s default in each backend."""
    from dpgmm_ppl.infer import BACKENDS

    return ", ".join(f"{name} default {backend.defaults[option]}"
                     for name, backend in BACKENDS.items() if option in backend.defaults)


def _parser():
    parser = argparse.ArgumentParser(
        prog="dpgmm-ppl", description="Dirichlet-process Gaussian mixtures in NumPyro.",
        epilog="Run 'dpgmm-ppl COMMAND --help' for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_fit(commands)
    compare = commands.add_parser(
        "compare", formatter_class=_Formatter,
        help="fit MAP, SVI and NUTS side by side (seed data, or a CSV/NPY file)",
        description="Fit MAP, SVI and NUTS with the same key; write a table (text, JSON),\n"
                    "the three fits (netCDF) and, for 1-d data, a figure of their densities.",
    )
    compare.add_argument("file", nargs="?", metavar="FILE",
                         help="CSV with a header row, or .npy array; default: the seed data")
    compare.add_argument("--columns", nargs="+", metavar="NAME",
                         help="CSV columns to use (default: all)")
    _add_common(compare, default_out="compare-output", num_components=25, num_chains=4)
    compare.add_argument("--quick", action="store_true", help="short runs, for a first look")
    compare.add_argument("--force", action="store_true", help="overwrite earlier output")
    demo = commands.add_parser(
        "demo", formatter_class=_Formatter,
        help="fit MAP to the seed data with the notebook's settings and plot it",
        description="Fit MAP to the seed notebook's data (Adam at 0.05), print the fitted\n"
                    "components against the true ones, write the figures, then run a short\n"
                    "comparison of MAP, SVI and NUTS.",
    )
    _add_common(demo, default_out="demo-output", num_components=50, num_chains=1)
    demo.add_argument("--num-steps", type=int, default=10_000, metavar="N", help="gradient steps")
    demo.add_argument("--no-compare", action="store_true",
                      help="skip the MAP / SVI / NUTS comparison at the end")
    return parser


def _run(args):
    if args.command == "fit":
        run_fit(
            args.file, out_dir=args.out, columns=args.columns, heldout=args.heldout,
            backend=args.backend, num_components=args.num_components, covariance=args.covariance,
            num_chains=args.num_chains, seed=args.seed, num_steps=args.num_steps,
            num_samples=args.num_samples, num_warmup=args.num_warmup, quick=args.quick,
            figures=args.figures, force=args.force, progress_bar=args.progress_bar,
        )
    elif args.command == "demo":
        run_demo(
            args.out, num_steps=args.num_steps, num_components=args.num_components,
            num_chains=args.num_chains, seed=args.seed, progress_bar=args.progress_bar,
        )
        if not args.no_compare and _has_posterior_backends():
            # Short runs keep the demo to a few minutes; `dpgmm-ppl compare`
            # runs the backends at their defaults.
            run_compare(args.out, seed=args.seed, force=True, quick=True, num_chains=2,
                        progress_bar=args.progress_bar)
    elif args.command == "compare":
        run_compare(
            args.out, args.file, columns=args.columns, num_components=args.num_components,
            num_chains=args.num_chains, seed=args.seed, quick=args.quick, force=args.force,
            progress_bar=args.progress_bar,
        )


def main(argv=None):
    """Entry point of the ``dpgmm-ppl`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the command's name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        0 on success, 2 for a bad option or input file (one line on
        stderr), 1 when an output file cannot be written, 130 on Ctrl-C.
    """
    args = _parser().parse_args(argv)
    if args.progress_bar is None:
        args.progress_bar = _is_terminal(sys.stderr)
    try:
        _run(args)
    except (ValueError, TypeError) as error:
        print(f"dpgmm-ppl {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"dpgmm-ppl {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dpgmm-ppl {args.command}: interrupted; no partly written file is left",
              file=sys.stderr)
        return 130
    return 0


def _has_posterior_backends():
    from dpgmm_ppl.infer import BACKENDS

    return any(not backend.is_point_estimate for backend in BACKENDS.values())


def _is_terminal(stream):
    """Whether ``stream`` is a terminal (a stream without ``isatty`` is not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or a closed stream
        return False
