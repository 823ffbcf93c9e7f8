"""Every entry point refuses bad input with one clear error, before JAX sees it.

One table (:data:`BAD_INPUTS`): a call, the exception type and a pattern its
message must match, which names the argument and what was given or expected.
The test also checks that the error was raised in this package's own
validation: no frame of the traceback lies inside ``jax``, ``jaxlib`` or
``numpyro``, and no log-density was built. The few inputs that look bad but
are accepted (integers, identical points, large but safe values) have tests
of their own below.
"""

from __future__ import annotations

import contextlib
import functools
import io
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import numpyro
import pytest
import xarray as xr

import dpgmm_ppl
from dpgmm_ppl import labels
from dpgmm_ppl.cli import main
from dpgmm_ppl.result import Fit

#: The float type fits run in: float32, or float64 under DPGMM_X64=1.
WORKING_DTYPE = np.dtype(jnp.result_type(float))
IS_FLOAT32 = WORKING_DTYPE == np.float32
#: A magnitude whose square overflows the working float type (but not the value itself).
HUGE = 1e38 if IS_FLOAT32 else 1e300
#: An offset at which the squares of the data overflow though their spread is small.
HUGE_OFFSET = 1e19 if IS_FLOAT32 else 1e160

TWO_GROUPS = np.concatenate([np.linspace(-5.0, -4.0, 10), np.linspace(4.0, 5.0, 10)])
PAIRS = np.stack([TWO_GROUPS, TWO_GROUPS[::-1]], axis=1)

#: Where an error must not come from: it would mean the input reached JAX or NumPyro.
FOREIGN_PACKAGES = tuple(Path(module.__file__).resolve().parent for module in (jax, jaxlib, numpyro))


class BadInput(NamedTuple):
    """A call that must fail: ``call(tmp_path)`` raises ``error`` matching ``pattern``."""

    name: str
    call: Callable[[Path], object]
    error: type
    pattern: str


@functools.lru_cache(maxsize=None)
def hand_made_fit(dim=None):
    """A 2-chain x 3-draw, 2-component fit built directly, no inference involved."""
    rng = np.random.default_rng(5)
    event = () if dim is None else (dim,)
    loc = np.array([-4.5, 4.5]).reshape((2,) + (1,) * len(event)) + np.zeros((2,) + event)
    samples = {
        "alpha": np.ones((2, 3), np.float32),
        "weights": np.full((2, 3, 2), 0.5, np.float32),
        "loc": np.broadcast_to(loc, (2, 3) + loc.shape).astype(np.float32),
        "scale": np.ones((2, 3, 2) + event, np.float32),
    }
    data = (TWO_GROUPS if dim is None else PAIRS).astype(np.float32)
    return Fit(backend="nuts", samples=samples, sample_stats={"lp": rng.normal(size=(2, 3))},
               data=data, num_components=2, priors=dpgmm_ppl.Priors())


def _frame_with_text():
    """A pandas DataFrame of two named columns, one cell of which is text."""
    pd = pytest.importorskip("pandas")
    return pd.DataFrame({"height": [1.0, 2.0, 3.0, 4.0], "weight": [5.0, 6.0, "heavy", 8.0]},
                        index=["a", "b", "c", "d"])


def fit_tiny(data=TWO_GROUPS, **kwargs):
    """``dpgmm_ppl.fit`` with small defaults, for calls that must fail before fitting."""
    return dpgmm_ppl.fit(data, **{"num_components": 2, **kwargs})


def cli_error_line(argv):
    """Run the CLI; it must return 2 with one line on stderr, raised here as a ValueError."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main([str(arg) for arg in argv])
    lines = stderr.getvalue().splitlines()
    assert code == 2 and len(lines) == 1, (code, lines)
    raise ValueError(lines[0])


def write(path, content):
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


def write_foreign_netcdf(path):
    xr.Dataset({"a": ("x", np.zeros(3))}).to_netcdf(path, engine="h5netcdf")
    return path


def compare_quietly(data=TWO_GROUPS, **kwargs):
    return dpgmm_ppl.compare(data, **{"backends": ("map",), "num_chains": 1, **kwargs})


def fit_data_rows():
    rows = [
        BadInput("nan", lambda _: fit_tiny(np.array([1.0, 2.0, np.nan, 3.0])),
                 ValueError, r"^data must be finite; row 2 holds nan$"),
        BadInput("inf-svi", lambda _: fit_tiny(np.array([1.0, np.inf, 2.0]), backend="svi"),
                 ValueError, r"^data must be finite; row 1 holds inf$"),
        BadInput("minus-inf-2d-nuts",
                 lambda _: fit_tiny(np.array([[1.0, 2.0], [3.0, -np.inf]]), backend="nuts"),
                 ValueError, r"^data must be finite; row 1 holds \[3\.0, -inf\]$"),
        BadInput("empty", lambda _: fit_tiny(np.array([])),
                 ValueError, r"^data must not be empty, got shape \(0,\)$"),
        BadInput("0-d", lambda _: fit_tiny(np.array(4.0)),
                 ValueError, r"^data must have shape \(N,\) or \(N, D\), got a 0-d array"),
        BadInput("3-d", lambda _: fit_tiny(np.zeros((4, 2, 2))),
                 ValueError,
                 r"^data must have shape \(N,\) or \(N, D\), got a 3-d array of shape \(4, 2, 2\)$"),
        BadInput("strings", lambda _: fit_tiny(np.array(["1", "2", "3"])),
                 TypeError, r"^data must hold real numbers, got an array of dtype <U1 whose "
                            r"values read as numbers; convert it with np\.asarray\(data, dtype=float\)$"),
        BadInput("objects", lambda _: fit_tiny(np.array([1.0, None, 2.0], dtype=object)),
                 TypeError, r"^data must hold real numbers; row 1 holds None "
                            r"\(an array of dtype object\)$"),
        BadInput("objects-2d", lambda _: fit_tiny(np.array([[1.0, 2.0], [3.0, "4"], [5.0, "n/a"]],
                                                           dtype=object)),
                 TypeError, r"^data must hold real numbers; row 2, column 1 holds 'n/a' "),
        BadInput("text-in-a-list", lambda _: fit_tiny([[1.0, 2.0], [3.0, "abc"]]),
                 TypeError, r"^data must hold real numbers; row 1, column 1 holds 'abc' "),
        BadInput("dataframe-text-cell", lambda _: fit_tiny(_frame_with_text()),
                 TypeError, r"^data must hold real numbers; row 2 \(index 'c'\), column 1 "
                            r"\('weight'\) holds 'heavy' \(an array of dtype object\)$"),
        BadInput("heldout-text", lambda _: hand_made_fit().log_predictive_density(
            np.array([1.0, "x"], dtype=object)),
                 TypeError, r"^x must hold real numbers; row 1 holds 'x' "),
        BadInput("complex", lambda _: fit_tiny(np.array([1 + 2j, 3.0, 4.0])),
                 TypeError, r"^data must hold real numbers, got a complex array$"),
        BadInput("booleans", lambda _: fit_tiny(np.array([True, False, True])),
                 TypeError, r"^data must hold real numbers, got a boolean array$"),
        BadInput("single-point", lambda _: fit_tiny(np.array([1.5])),
                 ValueError, r"^data must hold at least 2 points, got 1$"),
        BadInput("single-point-2d", lambda _: fit_tiny(np.array([[1.5, 2.5]]), backend="svi"),
                 ValueError, r"^data must hold at least 2 points, got 1$"),
        BadInput("ragged", lambda _: fit_tiny([[1.0, 2.0], [3.0]]),
                 ValueError, r"^data must be a rectangular numeric array of shape \(N,\) or \(N, D\)"),
        BadInput("squares-overflow", lambda _: fit_tiny(np.array([HUGE, -HUGE] * 5)),
                 ValueError, r"^data is too large to square in float(32|64): the squares of the "
                 r"values sum to .*largest magnitude 1e\+(38|300)"),
        BadInput("squares-overflow-column",
                 lambda _: fit_tiny(np.stack([TWO_GROUPS, np.full(20, HUGE)], axis=1), backend="nuts"),
                 ValueError, r"^data is too large to square in float(32|64): the squares of column 1"),
        BadInput("squares-overflow-offset",
                 lambda _: fit_tiny(HUGE_OFFSET + TWO_GROUPS * HUGE_OFFSET * 1e-5, backend="svi"),
                 ValueError, r"^data is too large to square"),
    ]
    if IS_FLOAT32:
        rows.append(BadInput("float32-overflow", lambda _: fit_tiny(np.array([1.0, 1e39, 2.0])),
                             ValueError, r"^data must fit in float32; row 1 holds 1e\+39"))
    return rows


def fit_argument_rows():
    integer = r"must be an integer >= 1, got"
    return [
        BadInput("num_components-0", lambda _: fit_tiny(num_components=0),
                 ValueError, rf"^num_components {integer} 0$"),
        BadInput("num_components-negative-svi", lambda _: fit_tiny(num_components=-1, backend="svi"),
                 ValueError, rf"^num_components {integer} -1$"),
        BadInput("num_components-float-nuts", lambda _: fit_tiny(num_components=2.5, backend="nuts"),
                 TypeError, rf"^num_components {integer} 2\.5 of type float$"),
        BadInput("num_components-bool", lambda _: fit_tiny(num_components=True),
                 TypeError, rf"^num_components {integer} True of type bool$"),
        BadInput("num_chains-0-nuts", lambda _: fit_tiny(num_chains=0, backend="nuts"),
                 ValueError, rf"^num_chains {integer} 0$"),
        BadInput("priors-dict", lambda _: fit_tiny(priors={"alpha_shape": 1.0}),
                 TypeError, r"^priors must be a dpgmm_ppl\.Priors, got dict$"),
        BadInput("priors-shape-1d",
                 lambda _: fit_tiny(priors=dpgmm_ppl.Priors(loc_mean=np.zeros(3))),
                 ValueError,
                 r"^priors\.loc_mean must be a scalar for data of shape \(20,\), got shape \(3,\)$"),
        BadInput("priors-shape-2d",
                 lambda _: fit_tiny(PAIRS, backend="svi", priors=dpgmm_ppl.Priors(scale_rate=np.ones(3))),
                 ValueError, r"^priors\.scale_rate must be a scalar or an array of shape \(2,\) "
                 r"for data of shape \(20, 2\), got shape \(3,\)$"),
        BadInput("rng_key-str", lambda _: fit_tiny(rng_key="seed"),
                 TypeError, r"^rng_key must be an int or a jax PRNG key .*got str"),
        BadInput("rng_key-float-svi", lambda _: fit_tiny(rng_key=1.5, backend="svi"),
                 TypeError, r"^rng_key must be an int or a jax PRNG key .*got float"),
        BadInput("rng_key-uint32-3", lambda _: fit_tiny(rng_key=np.zeros(3, np.uint32), backend="nuts"),
                 TypeError, r"^rng_key must be .*got ndarray with dtype uint32 and shape \(3,\)$"),
        BadInput("rng_key-too-big", lambda _: fit_tiny(rng_key=2**64),
                 ValueError,
                 r"^rng_key must be an int seed in \[-2\*\*63, 2\*\*63\), got 18446744073709551616$"),
        BadInput("num_steps-0-map", lambda _: fit_tiny(num_steps=0),
                 ValueError, rf"^num_steps {integer} 0$"),
        BadInput("num_steps-negative-svi", lambda _: fit_tiny(backend="svi", num_steps=-5),
                 ValueError, rf"^num_steps {integer} -5$"),
        BadInput("num_samples-0-svi", lambda _: fit_tiny(backend="svi", num_samples=0),
                 ValueError, rf"^num_samples {integer} 0$"),
        BadInput("num_samples-0-nuts", lambda _: fit_tiny(backend="nuts", num_samples=0),
                 ValueError, rf"^num_samples {integer} 0$"),
        BadInput("num_warmup-negative", lambda _: fit_tiny(backend="nuts", num_warmup=-1),
                 ValueError, r"^num_warmup must be an integer >= 0, got -1$"),
        BadInput("target_accept_prob-0", lambda _: fit_tiny(backend="nuts", target_accept_prob=0),
                 ValueError, r"^target_accept_prob must be in \(0, 1\), got 0$"),
        BadInput("target_accept_prob-1", lambda _: fit_tiny(backend="nuts", target_accept_prob=1),
                 ValueError, r"^target_accept_prob must be in \(0, 1\), got 1$"),
        BadInput("target_accept_prob-1.5", lambda _: fit_tiny(backend="nuts", target_accept_prob=1.5),
                 ValueError, r"^target_accept_prob must be in \(0, 1\), got 1\.5$"),
        BadInput("batch_size-above-N", lambda _: fit_tiny(backend="svi", batch_size=21),
                 ValueError, r"^batch_size must be at most the number of points \(20\), got 21$"),
        BadInput("batch_size-0", lambda _: fit_tiny(backend="svi", batch_size=0),
                 ValueError, rf"^batch_size {integer} 0$"),
        BadInput("unknown-guide", lambda _: fit_tiny(backend="svi", guide="flow"),
                 ValueError, r"^guide must be one of \['diagonal', 'lowrank', 'full'\], got 'flow'$"),
        BadInput("unknown-backend", lambda _: fit_tiny(backend="hmc"),
                 ValueError, r"^backend must be one of \['map', 'nuts', 'svi'\], got 'hmc'$"),
        BadInput("guide-to-map", lambda _: fit_tiny(guide="diagonal"),
                 TypeError, r"^backend 'map' does not take the option\(s\) \['guide'\]; its options are"),
        BadInput("num_warmup-to-svi", lambda _: fit_tiny(backend="svi", num_warmup=10),
                 TypeError, r"^backend 'svi' does not take the option\(s\) \['num_warmup'\]"),
        BadInput("num_steps-to-nuts", lambda _: fit_tiny(backend="nuts", num_steps=10),
                 TypeError, r"^backend 'nuts' does not take the option\(s\) \['num_steps'\]"),
    ]


def priors_rows():
    positive = r"must be positive and finite, got"
    return [
        BadInput("Priors-alpha_shape-negative", lambda _: dpgmm_ppl.Priors(alpha_shape=-1.0),
                 ValueError, rf"^Priors\.alpha_shape {positive} -1\.0$"),
        BadInput("Priors-alpha_rate-0", lambda _: dpgmm_ppl.Priors(alpha_rate=0),
                 ValueError, rf"^Priors\.alpha_rate {positive} 0$"),
        BadInput("Priors-scale_shape-0", lambda _: dpgmm_ppl.Priors(scale_shape=0.0),
                 ValueError, rf"^Priors\.scale_shape {positive} 0\.0$"),
        BadInput("Priors-loc_scale-negative", lambda _: dpgmm_ppl.Priors(loc_scale=-1.0),
                 ValueError, r"^Priors\.loc_scale must be positive, got -1\.0$"),
        BadInput("Priors-scale_rate-0", lambda _: dpgmm_ppl.Priors(scale_rate=0.0),
                 ValueError, r"^Priors\.scale_rate must be positive, got 0\.0$"),
        BadInput("Priors-fixed_scale-negative", lambda _: dpgmm_ppl.Priors(fixed_scale=[1.0, -2.0]),
                 ValueError, r"^Priors\.fixed_scale must be positive, got \[1\.0, -2\.0\]$"),
        BadInput("Priors-alpha_shape-str", lambda _: dpgmm_ppl.Priors(alpha_shape="1"),
                 TypeError, r"^Priors\.alpha_shape must be a positive float, got '1'$"),
        BadInput("Priors-loc_mean-str", lambda _: dpgmm_ppl.Priors(loc_mean="a"),
                 TypeError, r"^Priors\.loc_mean must be None, a float or a 1-d float array, got 'a'$"),
    ]


def compare_rows():
    return [
        BadInput("compare-nan", lambda _: compare_quietly(np.array([0.0, np.nan, 1.0])),
                 ValueError, r"^data must be finite; row 1 holds nan$"),
        BadInput("compare-unknown-backend", lambda _: compare_quietly(backends=("map", "hmc")),
                 ValueError, r"^backends must be among \['map', 'nuts', 'svi'\], got \['hmc'\]$"),
        BadInput("compare-backends-str", lambda _: compare_quietly(backends="map"),
                 TypeError, r"^backends must be a non-empty sequence of names, got 'map'$"),
        BadInput("compare-heldout-dim", lambda _: compare_quietly(heldout=np.zeros((3, 2))),
                 ValueError, r"^heldout must have the training data's dimension \(\), got shape \(3, 2\)$"),
        BadInput("compare-options-not-dict", lambda _: compare_quietly(backend_options={"map": 3}),
                 TypeError, r"^backend_options\['map'\] must be a dict of options, got int$"),
        # The MAP fit must not run before the SVI option is refused.
        BadInput("compare-second-backend-option",
                 lambda _: compare_quietly(backends=("map", "svi"),
                                           backend_options={"svi": {"num_warmup": 3}}),
                 TypeError, r"^backend 'svi' does not take the option\(s\) \['num_warmup'\]"),
        BadInput("compare-num_components-0", lambda _: compare_quietly(num_components=0),
                 ValueError, r"^num_components must be an integer >= 1, got 0$"),
    ]


def labels_rows():
    wrong_dim = r"^x must have shape \(n,\) like the training data, got \(3, 2\)$"
    return [
        BadInput("relabel-method", lambda _: labels.relabel(hand_made_fit(), method="foo"),
                 ValueError, r"^method must be one of 'pivot', 'ecr', 'stephens', got 'foo'$"),
        BadInput("relabel-not-a-fit", lambda _: labels.relabel("fit"),
                 TypeError, r"^fit must be a dpgmm_ppl\.Fit, got str$"),
        BadInput("relabel-x-dim", lambda _: labels.relabel(hand_made_fit(), x=np.zeros((3, 2))),
                 ValueError, wrong_dim),
        BadInput("report-threshold",
                 lambda _: labels.label_switching_report(hand_made_fit(), threshold=0.5),
                 ValueError, r"^threshold must be a number > 1, got 0\.5$"),
        BadInput("report-x-dim",
                 lambda _: labels.label_switching_report(hand_made_fit(), x=np.zeros((3, 2))),
                 ValueError, wrong_dim),
        BadInput("coclustering-max_points",
                 lambda _: labels.coclustering_matrix(hand_made_fit(), max_points=1),
                 ValueError, r"^max_points must be an integer >= 2, got 1$"),
        BadInput("coclustering-x-nan",
                 lambda _: labels.coclustering_matrix(hand_made_fit(), x=np.array([0.0, np.nan])),
                 ValueError, r"^x must be finite; row 1 holds nan$"),
        BadInput("partition-loss", lambda _: labels.point_partition(hand_made_fit(), loss="l2"),
                 ValueError, r"^loss must be one of 'vi', 'binder', got 'l2'$"),
        BadInput("num_clusters-threshold",
                 lambda _: labels.num_clusters_posterior(hand_made_fit(), threshold=1.5),
                 ValueError, r"^threshold must be a number in \[0, 1\), got 1\.5$"),
        BadInput("num_clusters-x-dim",
                 lambda _: labels.num_clusters_posterior(hand_made_fit(), x=np.zeros((3, 2))),
                 ValueError, wrong_dim),
    ]


def fit_method_rows():
    rows = [
        BadInput("log_predictive_density-dim",
                 lambda _: hand_made_fit().log_predictive_density(np.zeros((4, 2))),
                 ValueError, r"^x must have shape \(n,\) like the training data, got \(4, 2\)$"),
        BadInput("predict-dim", lambda _: hand_made_fit().predict(np.zeros((4, 2))),
                 ValueError, r"^x must have shape \(n,\) like the training data, got \(4, 2\)$"),
        BadInput("predictive_density-dim",
                 lambda _: hand_made_fit().predictive_density(np.zeros((4, 2))),
                 ValueError, r"^grid must have shape \(n,\) like the training data, got \(4, 2\)$"),
        BadInput("log_predictive_density-dim-2d",
                 lambda _: hand_made_fit(2).log_predictive_density(np.zeros((4, 3))),
                 ValueError, r"^x must have shape \(n, 2\) like the training data, got \(4, 3\)$"),
        BadInput("predict-1d-on-2d", lambda _: hand_made_fit(2).predict(np.zeros(4)),
                 ValueError, r"^x must have shape \(n, 2\) like the training data, got \(4,\)$"),
        BadInput("predictive_density-hdi_prob",
                 lambda _: hand_made_fit().predictive_density(np.zeros(3), hdi_prob=1.0),
                 ValueError, r"^hdi_prob must be a float in \(0, 1\), got 1\.0$"),
        BadInput("log_predictive_density-chain",
                 lambda _: hand_made_fit().log_predictive_density(np.zeros(3), chain=5),
                 ValueError, r"^chain must be in \[0, 2\), got 5$"),
    ]
    if IS_FLOAT32:
        rows.append(BadInput("log_predictive_density-float32-overflow",
                             lambda _: hand_made_fit().log_predictive_density(np.array([1e39])),
                             ValueError, r"^x must fit in float32; row 0 holds 1e\+39"))
    return rows


def load_rows():
    return [
        BadInput("load-text-file", lambda tmp: dpgmm_ppl.load(write(tmp / "notes.txt", "hello")),
                 ValueError, r"^path '.*notes\.txt' is not a netCDF-4 file"),
        BadInput("load-foreign-netcdf", lambda tmp: dpgmm_ppl.load(write_foreign_netcdf(tmp / "a.nc")),
                 ValueError, r"a\.nc' holds no posterior group: not a dpgmm_ppl fit$"),
        BadInput("load-int", lambda _: dpgmm_ppl.load(3),
                 TypeError, r"^path must be a str or os\.PathLike, got int$"),
    ]


def cli_rows():
    good_csv = "x\n" + "\n".join(str(value) for value in TWO_GROUPS) + "\n"

    def three_d_npy(tmp):
        np.save(tmp / "cube.npy", np.zeros((3, 2, 2)))
        return tmp / "cube.npy"

    def existing_output(tmp):
        write(tmp / "compare.txt", "an earlier table")
        return cli_error_line(["compare", write(tmp / "d.csv", good_csv), "--out", tmp])

    def pickled_npy(tmp):
        np.save(tmp / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        return tmp / "objects.npy"

    def existing_fit_output(tmp):
        write(tmp / "fit.nc", "an earlier fit")
        return cli_error_line(["fit", write(tmp / "d.csv", good_csv), "--out", tmp])

    return [
        BadInput("cli-missing-file",
                 lambda tmp: cli_error_line(["compare", tmp / "missing.csv", "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl compare: error: .*missing\.csv: no such file$"),
        BadInput("cli-nan-in-csv",
                 lambda tmp: cli_error_line(["compare", write(tmp / "d.csv", "x\n1\nnan\n3\n"),
                                             "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl compare: error: .*d\.csv: line 3 holds a non-finite value"),
        BadInput("cli-num-components-0",
                 lambda tmp: cli_error_line(["compare", write(tmp / "d.csv", good_csv), "--out", tmp / "out",
                                             "--num-components", 0]),
                 ValueError, r"^dpgmm-ppl compare: error: --num-components must be an integer >= 1, got 0$"),
        BadInput("cli-3d-npy",
                 lambda tmp: cli_error_line(["compare", three_d_npy(tmp), "--out", tmp / "out"]),
                 ValueError,
                 r"^dpgmm-ppl compare: error: .*cube\.npy: the data must have shape \(N,\) or \(N, D\), got a 3-d"),
        BadInput("cli-existing-output", existing_output,
                 ValueError, r"^dpgmm-ppl compare: error: .* already holds comparison output; pass --force"),
        BadInput("cli-demo-num-steps-0",
                 lambda tmp: cli_error_line(["demo", "--num-steps", 0, "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl demo: error: --num-steps must be an integer >= 1, got 0$"),
        BadInput("cli-fit-pickle-npy",
                 lambda tmp: cli_error_line(["fit", pickled_npy(tmp), "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl fit: error: .*objects\.npy: not a plain numeric NPY array"),
        BadInput("cli-fit-header-only",
                 lambda tmp: cli_error_line(["fit", write(tmp / "d.csv", "x,y\n"), "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl fit: error: .*d\.csv: expected a header row and at least one data row$"),
        BadInput("cli-fit-unknown-column",
                 lambda tmp: cli_error_line(["fit", write(tmp / "d.csv", good_csv), "--columns", "y",
                                             "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl fit: error: .*d\.csv: no column\(s\) \['y'\]; the header has \['x'\]$"),
        BadInput("cli-fit-existing-output", existing_fit_output,
                 ValueError, r"^dpgmm-ppl fit: error: .*fit\.nc already exists; pass --force to overwrite it$"),
        BadInput("cli-fit-num-warmup-for-map",
                 lambda tmp: cli_error_line(["fit", write(tmp / "d.csv", good_csv), "--num-warmup", 5,
                                             "--out", tmp / "out"]),
                 ValueError, r"^dpgmm-ppl fit: error: --num-warmup applies to --backend nuts, not map$"),
    ]


BAD_INPUTS = (fit_data_rows() + fit_argument_rows() + priors_rows() + compare_rows()
              + labels_rows() + fit_method_rows() + load_rows() + cli_rows())


def foreign_frames(traceback):
    """Frames of a pytest traceback that lie inside jax, jaxlib or numpyro."""
    return [
        str(entry.path) for entry in traceback
        if any(Path(entry.path).resolve().is_relative_to(root) for root in FOREIGN_PACKAGES)
    ]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.name for bad in BAD_INPUTS])
def test_bad_input_is_refused_with_a_clear_error_before_jax(bad, monkeypatch, tmp_path):
    def refuse_to_build(*args, **kwargs):
        raise AssertionError("a log-density was built before the input was refused")

    monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", refuse_to_build)
    with pytest.raises(bad.error) as caught:
        bad.call(tmp_path)
    assert caught.type is bad.error, f"{caught.type.__name__}: {caught.value}"
    assert caught.match(bad.pattern)
    assert foreign_frames(caught.traceback) == []


def test_the_table_holds_at_least_35_distinct_bad_inputs():
    assert len(BAD_INPUTS) >= 35
    assert len({bad.name for bad in BAD_INPUTS}) == len(BAD_INPUTS)


def test_integer_data_are_accepted_as_floats():
    """Integers are converted to the working float type, as ``fit``'s docstring says."""
    assert "Integers are converted to floats" in dpgmm_ppl.fit.__doc__
    counts = np.concatenate([np.arange(0, 10), np.arange(40, 50)])  # int64
    fit = dpgmm_ppl.fit(counts, num_components=2, num_steps=150, history_every=150)
    assert fit.data.dtype == WORKING_DTYPE
    np.testing.assert_array_equal(fit.data, counts.astype(WORKING_DTYPE))
    assert np.all(np.isfinite(fit.losses))
    low, high = fit.predict(np.array([3, 45]))
    assert low != high


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_identical_points_give_one_component_at_their_value():
    """All points identical is allowed: the default priors take their scale from
    the value's magnitude, and MAP puts (nearly) all weight on one component there."""
    data = np.full(20, 3.0)
    fit = dpgmm_ppl.fit(data, num_components=3, num_steps=200, history_every=200)
    for name, value in fit.samples.items():
        assert np.all(np.isfinite(value)), name
    assert np.all(np.isfinite(fit.losses))
    weights, loc = fit.samples["weights"][0, 0], fit.samples["loc"][0, 0]
    heavy = int(np.argmax(weights))
    assert weights[heavy] > 0.99
    assert loc[heavy] == pytest.approx(3.0, abs=1e-3)
    assert np.all(fit.samples["scale"] > 0)
    assert np.isfinite(fit.log_predictive_density(np.array([3.0, 4.0]))).all()


def test_large_data_below_the_squares_limit_still_fit():
    """The squares check refuses only what would overflow: data of magnitude 1e17
    (squares summing to 2e35, under float32's limit of 8.5e37) fit without NaN."""
    scale = 1e17
    fit = dpgmm_ppl.fit(TWO_GROUPS * scale, num_components=2, num_steps=150, history_every=150)
    assert np.all(np.isfinite(fit.losses))
    for name, value in fit.samples.items():
        assert np.all(np.isfinite(value)), name
    low, high = np.sort(fit.samples["loc"][0, 0]) / scale
    assert -5.5 < low < -3.5 and 3.5 < high < 5.5  # one component on each group
