"""The ``dpgmm-ppl`` command: ``fit`` end to end, bad files, ``--force``,
atomic writes, help texts, and the progress bars of the backends.

Every fit here is tiny (a few hundred points, three or four components,
short runs), and runs in this process through ``main([...])``; one test runs
the installed console script for its exit status. Most runs pass
``--no-progress``: a program that holds a progress callback is left out of
JAX's persistent compilation cache, which the suite shares between tests.
The three longest (NUTS on a pandas CSV, MAP with every figure, the SVI bar)
are slow: CI's first leg runs them, the 3.12+ leg does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl import persistence
from dpgmm_ppl.cli import QUICK_OPTIONS, main, read_table
from dpgmm_ppl.result import Fit

TRUE_LOC_2D = np.array([[-3.0, 1.0], [3.0, -1.0]])
#: A short MAP run of two restarts on ``two_clusters_1d(7)``. Without the progress bar (whose
#: callback keeps a program out of JAX's persistent cache) the tests that run it share one
#: compiled program, the one ``dpgmm_ppl.fit(values, num_components=4, num_chains=2,
#: num_steps=1000)`` compiles.
TINY_MAP = ["--quick", "--num-components", "4", "--num-chains", "2"]


def two_clusters_2d(seed, sizes=(150, 100)):
    rng = np.random.default_rng(seed)
    groups = [rng.normal(loc, 0.5, (size, 2)) for loc, size in zip(TRUE_LOC_2D, sizes)]
    return np.concatenate(groups)


def two_clusters_1d(seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3.0, 0.6, 120), rng.normal(2.5, 0.8, 80)])


def pandas_csv(path, values, names):
    """Write ``values`` as ``pandas.DataFrame(values, columns=names).to_csv(path)`` does.

    pandas is not a dependency; its default output (index included) is a
    header with an empty first name, ``,a,b``, then ``0,1.5,2.0`` and so on,
    the index counting from 0 and every float in its shortest round-trip
    form (Python's ``repr``). Where pandas is installed the test compares
    the two texts.
    """
    lines = ["," + ",".join(names)]
    lines += [f"{i}," + ",".join(repr(float(v)) for v in row) for i, row in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def plain_csv(path, values, names):
    rows = np.asarray(values).reshape(len(values), -1)
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(argv, capsys):
    """``main(argv)`` -> (exit status, stdout, stderr lines)."""
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def files_in(folder):
    return sorted(p.name for p in Path(folder).iterdir()) if Path(folder).exists() else []


def best_chain_mean(fit, name):
    return np.asarray(fit.samples[name][fit.best_chain], np.float64).mean(axis=0)


# --- help -------------------------------------------------------------------------------

@pytest.mark.parametrize("command, words", [
    ([], ["fit", "compare", "demo"]),
    (["fit"], ["--columns", "--backend", "--covariance", "--heldout", "--force", "--quick",
               "summary.json", "fit.nc", "pandas index"]),
    (["compare"], ["--quick", "--force", "--num-chains"]),
    (["demo"], ["--num-steps", "--no-compare"]),
])
def test_every_command_explains_itself(command, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for word in words:
        assert word in text, word


# --- fit, end to end --------------------------------------------------------------------

@pytest.fixture
def tiny_nuts(monkeypatch):
    """``--quick`` NUTS without the Adam descent of the starts and with short trees."""
    monkeypatch.setitem(QUICK_OPTIONS, "nuts", {"num_init_steps": 0, "max_tree_depth": 5})


@pytest.mark.slow
def test_fit_nuts_on_a_pandas_csv(tmp_path, capsys, tiny_nuts):
    """The acceptance check: ``dpgmm-ppl fit some.csv --backend nuts --out out/``
    on a CSV written by pandas (index column included)."""
    values, heldout = two_clusters_2d(1), two_clusters_2d(2, sizes=(30, 20))
    data_csv = pandas_csv(tmp_path / "some.csv", values, ["a", "b"])
    held_csv = pandas_csv(tmp_path / "held.csv", heldout, ["a", "b"])
    try:
        import pandas as pd
    except ImportError:
        pass
    else:
        assert pd.DataFrame(values, columns=["a", "b"]).to_csv() == data_csv.read_text()
    out = tmp_path / "out"
    code, printed, err = run(["fit", data_csv, "--backend", "nuts", "--out", out, "--quick",
                              "--num-components", 3, "--num-warmup", 60, "--num-samples", 60,
                              "--heldout", held_csv, "--no-progress", "--seed", 3], capsys)
    assert code == 0, err
    assert [line for line in err if "unnamed first column" in line and "some.csv" in line]
    assert files_in(out) == ["components.png", "fit.nc", "summary.json", "trace.png", "weights.png"]
    summary = json.loads((out / "summary.json").read_text())
    loaded = dpgmm_ppl.load(out / "fit.nc")
    # The index column was left out: the fit holds the two named columns.
    np.testing.assert_allclose(loaded.data, values, rtol=1e-6)
    assert summary["columns"] == ["a", "b"] and summary["dim"] == 2 and summary["num_points"] == 250
    assert summary["backend"] == loaded.backend == "nuts" and summary["seed"] == 3
    assert summary["data_file"] == str(data_csv.resolve())
    assert summary["package_version"] == dpgmm_ppl.__version__
    assert summary["backend_options"]["num_warmup"] == 60 == loaded.options["num_warmup"]
    assert loaded.samples["alpha"].shape == (1, 60)
    # Weights and locations are the saved draws' means (best chain), sorted by weight.
    assert summary["chain"] == loaded.best_chain
    weights, loc = best_chain_mean(loaded, "weights"), best_chain_mean(loaded, "loc")
    np.testing.assert_allclose(summary["weights"], weights, rtol=1e-9)
    components = summary["components"]
    by_weight = [c["weight"] for c in components]
    assert by_weight == sorted(by_weight, reverse=True)
    for row in components:
        np.testing.assert_allclose(row["loc"], loc[row["component"]], rtol=1e-9)
    # The components above 5%, grouped by the nearer true cluster, carry the
    # clusters' weights, and their weighted mean location is the cluster's
    # (standard errors about 0.05 here). In 60 draws one cluster can be
    # shared by two components, each on one half of it.
    assert summary["num_clusters"]["count"] == len(components)
    heavy = [c for c in components if c["weight"] > 0.05]
    nearest = np.array([np.argmin(np.linalg.norm(TRUE_LOC_2D - c["loc"], axis=1)) for c in heavy])
    weight = np.array([c["weight"] for c in heavy])
    loc = np.array([c["loc"] for c in heavy])
    mass = np.array([weight[nearest == j].sum() for j in range(2)])
    np.testing.assert_allclose(mass, [0.6, 0.4], atol=0.1)
    centres = [weight[nearest == j] @ loc[nearest == j] / mass[j] for j in range(2)]
    np.testing.assert_allclose(centres, TRUE_LOC_2D, atol=0.3)
    posterior = summary["num_clusters"]["posterior"]
    assert sum(posterior.values()) == pytest.approx(1.0)
    assert max(posterior, key=posterior.get) == "2"
    alpha = summary["alpha"]
    assert alpha["mean"] == pytest.approx(float(np.mean(loaded.samples["alpha"])), rel=1e-6)
    assert alpha["interval"]["lower"] < alpha["mean"] < alpha["interval"]["upper"]
    # The held-out score is the loaded fit's (the held-out file lost its index column too).
    expected = float(np.mean(loaded.log_predictive_density(heldout)))
    assert summary["heldout"]["mean_log_predictive_density"] == pytest.approx(expected, rel=1e-6)
    assert summary["heldout"]["num_points"] == 50
    assert "1-d" in summary["figures_skipped"]["density.png"]
    assert summary["figures"] == ["components.png", "weights.png", "trace.png"]
    assert "held-out mean log predictive density" in printed


@pytest.mark.slow
def test_fit_map_1d_with_figures_progress_bar_and_force(tmp_path, capsys):
    values = two_clusters_1d(7)
    csv = plain_csv(tmp_path / "x.csv", values, ["x"])
    out = tmp_path / "out"
    code, printed, err = run(["fit", csv, "--out", out, "--progress"] + TINY_MAP, capsys)
    assert code == 0, err
    assert files_in(out) == ["density.png", "fit.nc", "loss.png", "summary.json",
                             "training.gif", "weights.png"]
    # The step bar counts every step of both restarts; the file bar every file.
    assert any("MAP" in line and "2000/2000" in line for line in err), err
    assert any("writing" in line and "6/6" in line for line in err), err
    summary = json.loads((out / "summary.json").read_text())
    loaded = dpgmm_ppl.load(out / "fit.nc")
    # The same fit without a bar, bit for bit: the bar changes nothing.
    assert loaded.options["progress_bar"] is True
    assert_same_fit(loaded, dpgmm_ppl.fit(values, num_components=4, num_chains=2, num_steps=1000))
    assert loaded.losses.shape == (2, 1000) and summary["backend_options"]["num_steps"] == 1000
    chain = loaded.best_chain
    assert summary["alpha"]["value"] == pytest.approx(float(loaded.samples["alpha"][chain, 0]))
    np.testing.assert_allclose(summary["weights"], loaded.samples["weights"][chain, 0], rtol=1e-6)
    locs = sorted(c["loc"] for c in summary["components"])
    np.testing.assert_allclose(locs, [-3.0, 2.5], atol=0.3)
    assert summary["num_clusters"]["per_restart"] == list(loaded.num_components_used(0.01)[:, 0])

    # Existing output is never overwritten without --force: one line, exit 2, files untouched.
    before = {name: (out / name).read_bytes() for name in files_in(out)}
    code, _, err = run(["fit", csv, "--out", out, "--no-progress"] + TINY_MAP, capsys)
    assert code == 2 and len(err) == 1
    assert err[0] == (f"dpgmm-ppl fit: error: {out / 'fit.nc'} already exists; "
                      "pass --force to overwrite it")
    assert {name: (out / name).read_bytes() for name in files_in(out)} == before

    # With --force it is; the figures of the earlier fit go with it (none drawn this time).
    code, printed, err = run(["fit", csv, "--out", out, "--no-progress", "--no-figures", "--force",
                              "--seed", 1] + TINY_MAP, capsys)
    assert code == 0, err
    assert files_in(out) == ["fit.nc", "summary.json"]
    assert printed.count("removed") == 4 and "density.png" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 1 and summary["figures"] == []
    assert summary["figures_skipped"]["weights.png"] == "--no-figures"
    assert not np.array_equal(dpgmm_ppl.load(out / "fit.nc").losses, loaded.losses)


def test_fit_options_that_do_not_apply_are_refused(tmp_path, capsys):
    csv = plain_csv(tmp_path / "x.csv", two_clusters_1d(0), ["x"])
    for extra, words in [
        (["--backend", "map", "--num-warmup", 10],
         "--num-warmup applies to --backend nuts, not map"),
        (["--backend", "nuts", "--num-steps", 10], "--num-steps applies to --backend map or svi"),
        (["--num-steps", 0], "--num-steps must be an integer >= 1, got 0"),
        (["--num-components", 0], "--num-components must be an integer >= 1, got 0"),
    ]:
        code, _, err = run(["fit", csv, "--out", tmp_path / "out"] + extra, capsys)
        assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists()


# --- bad files --------------------------------------------------------------------------

def _pickled_npy(path):
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _npz_named_npy(path):
    with open(path, "wb") as stream:
        np.savez(stream, a=np.zeros(3))


BAD_FILES = {
    # name: (file name, writer of the content or None for a missing file, words in the error)
    "missing": ("data.csv", None, "no such file"),
    "empty": ("data.csv", b"", "the file is empty"),
    "header-only": ("data.csv", b"a,b\n", "expected a header row and at least one data row"),
    "non-numeric": ("data.csv", b"a,b\n1,2\n3,abc\n",
                    "line 3 holds a non-numeric value 'abc' in column 'b'"),
    "ragged": ("data.csv", b"a,b\n1,2\n3\n", "line 3 has 1 fields, the header has 2"),
    "nan": ("data.csv", b"a\n1\nnan\n2\n", "line 3 holds a non-finite value"),
    "no-header": ("data.csv", b"1.5,2\n3,4\n", "the first line holds numbers"),
    "not-text": ("data.csv", b"\x89PNG\r\n\x1a\n\xff\xfe", "not a UTF-8 text file"),
    "one-point": ("data.csv", b"a\n1\n", "must hold at least 2 points"),
    "pickle-npy": ("data.npy", _pickled_npy, "not a plain numeric NPY array"),
    "3d-npy": ("data.npy", lambda p: np.save(p, np.zeros((3, 2, 2))),
               "must have shape (N,) or (N, D), got a 3-d"),
    "text-npy": ("data.npy", lambda p: np.save(p, np.array(["a", "b"])), "must hold real numbers"),
    "npz-npy": ("data.npy", _npz_named_npy, "an NPZ archive"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gives_one_line_naming_it_and_exit_2(case, tmp_path, capsys, monkeypatch):
    def refuse_to_build(*args, **kwargs):
        raise AssertionError("a log-density was built before the file was refused")

    monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", refuse_to_build)
    name, content, words = BAD_FILES[case]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        content(path)
    code, printed, err = run(["fit", path, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"dpgmm-ppl fit: error: {path}: ") and words in err[0], err[0]
    assert "Traceback" not in printed and not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, words", [
    (["--columns", "a", "zz"], "x.csv: no column(s) ['zz']; the header has ['a', 'b']"),
    (["--heldout", "missing.csv"], "missing.csv: no such file"),
    (["--heldout", "three.npy"], "three.npy: 3 columns, the data file x.csv 2"),
    (["--heldout", "empty.npy"], "empty.npy: the data must not be empty"),
    (["--columns", "a", "--heldout", "three.npy"],
     "three.npy: --columns applies to CSV files only"),
])
def test_bad_columns_and_heldout_files(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain_csv(tmp_path / "x.csv", two_clusters_2d(0), ["a", "b"])
    np.save(tmp_path / "three.npy", np.zeros((5, 3)))
    np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
    code, _, err = run(["fit", "x.csv", "--out", "out"] + argv, capsys)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists()


def test_read_table_reads_what_it_should(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("\ufeffa, b ,c\n1,2,3\n\n4,5,6\n")  # a byte-order mark, spaces, a blank line
    table = read_table(path, ["c", "a"])
    np.testing.assert_array_equal(table.values, [[3, 1], [6, 4]])
    assert table.columns == ["c", "a"] and table.notes == []
    assert read_table(path).columns == ["a", "b", "c"]
    path.write_text("0,1\n1.5,2\n2.5,3\n")  # pandas' names for an array's columns
    np.testing.assert_array_equal(read_table(path).values, [[1.5, 2], [2.5, 3]])
    np.save(tmp_path / "col.npy", np.arange(4.0)[:, None])
    assert read_table(tmp_path / "col.npy").values.shape == (4,)


def test_console_script_exit_status(tmp_path):
    script = Path(sys.executable).with_name("dpgmm-ppl")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dpgmm_ppl.cli"]
    result = subprocess.run(command + ["fit", str(tmp_path / "nothing.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    expected = f"dpgmm-ppl fit: error: {tmp_path / 'nothing.csv'}: no such file"
    assert result.stderr.splitlines() == [expected]


# --- atomic writes ----------------------------------------------------------------------

def hand_made_fit():
    rng = np.random.default_rng(3)
    return Fit(
        backend="nuts",
        samples={"alpha": np.ones((1, 2), np.float32),
                 "weights": np.full((1, 2, 2), 0.5, np.float32),
                 "loc": rng.normal(size=(1, 2, 2)).astype(np.float32),
                 "scale": np.ones((1, 2, 2), np.float32)},
        sample_stats={"lp": rng.normal(size=(1, 2)).astype(np.float32)},
        data=rng.normal(size=20).astype(np.float32), num_components=2, priors=dpgmm_ppl.Priors(),
    )


def write_half_then(error):
    """A stand-in writer that writes part of a file, then raises ``error``."""
    def write(_data, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n half a file")
        raise error
    return write


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError("disk full")])
def test_an_interrupted_save_leaves_no_partial_or_temporary_file(error, tmp_path, monkeypatch):
    fit, path = hand_made_fit(), tmp_path / "fit.nc"
    monkeypatch.setattr(persistence, "write_netcdf", write_half_then(error))
    with pytest.raises(type(error)):
        fit.save(path)
    assert files_in(tmp_path) == []
    # Over an earlier file: the earlier file stays as it was.
    monkeypatch.undo()
    fit.save(path)
    saved = path.read_bytes()
    monkeypatch.setattr(persistence, "write_netcdf", write_half_then(error))
    with pytest.raises(type(error)):
        fit.save(path)
    assert files_in(tmp_path) == ["fit.nc"] and path.read_bytes() == saved
    np.testing.assert_array_equal(dpgmm_ppl.load(path).samples["loc"], fit.samples["loc"])


@pytest.mark.parametrize("where", ["netcdf", "figure"])
def test_an_interrupted_fit_command_leaves_only_whole_files(where, tmp_path, capsys, monkeypatch):
    if where == "netcdf":
        monkeypatch.setattr(persistence, "write_netcdf", write_half_then(KeyboardInterrupt()))
    else:
        def savefig(figure, path, *args, **kwargs):
            Path(path).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    csv = plain_csv(tmp_path / "x.csv", two_clusters_1d(7), ["x"])
    out = tmp_path / "out"
    code, _, err = run(["fit", csv, "--out", out, "--no-progress"] + TINY_MAP, capsys)
    assert code == 130 and err[-1] == "dpgmm-ppl fit: interrupted; no partly written file is left"
    # The fit is written first and whole; no figure, no summary, no temporary file.
    assert files_in(out) == ([] if where == "netcdf" else ["fit.nc"])
    if where == "figure":
        assert dpgmm_ppl.load(out / "fit.nc").losses.shape == (2, 1000)


# --- progress bars of the backends ------------------------------------------------------


class _Stream:
    """A stand-in for stderr that is, or is not, a terminal."""

    def __init__(self, terminal):
        self.terminal = terminal

    def isatty(self):
        return self.terminal

    def write(self, text):
        return len(text)

    def flush(self):
        pass


@pytest.mark.parametrize("command", [["fit", "x.csv"], ["demo"], ["compare"]])
@pytest.mark.parametrize("flags, terminal, shown", [
    ([], True, True), ([], False, False), (["--progress"], False, True),
    (["--no-progress"], True, False),
])
def test_progress_bars_are_shown_on_a_terminal_unless_asked_otherwise(
    monkeypatch, command, flags, terminal, shown
):
    """Off by default where stderr is not a terminal: a program with a bar's
    callbacks is left out of the compilation caches, so a batch of CLI runs
    would compile every fit again."""
    import dpgmm_ppl.cli as cli

    seen = []
    monkeypatch.setattr(cli, "_run", lambda args: seen.append(args.progress_bar))
    monkeypatch.setattr(sys, "stderr", _Stream(terminal))
    assert main(command + flags) == 0
    assert seen == [shown]


def test_progress_and_no_progress_together_are_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "x.csv", "--progress", "--no-progress"])
    assert stopped.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def assert_same_fit(first, second):
    for name in first.samples:
        np.testing.assert_array_equal(first.samples[name], second.samples[name], err_msg=name)
    np.testing.assert_array_equal(first.losses, second.losses)
    for name in first.history:
        np.testing.assert_array_equal(first.history[name], second.history[name], err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("in_program", [True, False])
def test_svi_progress_bar_counts_every_step_and_changes_nothing(monkeypatch, capsys, in_program):
    """130 steps, a report every 50 and at the last (inside a ``lax.cond``), for
    each of two restarts under ``vmap``: 260 steps. MAP's bar is checked through
    the command (``test_fit_map_1d_with_figures_progress_bar_and_force``).

    A fit this short counts its steps from the host, once its program is done,
    and runs the very program of the fit without a bar (which the compilation
    caches keep); from ``IN_PROGRAM_WORK`` on, the program counts them itself.
    """
    from dpgmm_ppl.infer import _progress
    from dpgmm_ppl.infer._common import PROGRAM_COUNTS

    if in_program:
        monkeypatch.setattr(_progress, "IN_PROGRAM_WORK", 0.0)
    common = dict(backend="svi", num_components=3, num_chains=2, num_steps=130, history_every=50,
                  num_samples=5, rng_key=5, chain_method="vectorized")
    quiet = dpgmm_ppl.fit(two_clusters_1d(2), **common)
    assert capsys.readouterr().err == ""
    counts = dict(PROGRAM_COUNTS)
    shown = dpgmm_ppl.fit(two_clusters_1d(2), progress_bar=True, **common)
    err = capsys.readouterr().err
    assert "SVI" in err and "260/260" in err
    assert_same_fit(quiet, shown)
    assert shown.options["progress_bar"] is True and quiet.options["progress_bar"] is False
    if not in_program:  # (in the program, the callbacks alone reach 260: finish() adds nothing)
        assert PROGRAM_COUNTS["built"] == counts["built"]
        assert PROGRAM_COUNTS["compiled"] == counts["compiled"]


def test_minibatch_chunks_are_counted_as_they_finish():
    """Minibatch SVI counts each chunk of steps on the host, one chunk behind."""
    from dpgmm_ppl.infer._minibatch import _count_finished
    from dpgmm_ppl.infer._progress import StepBar

    bar = StepBar("SVI", 1300, enabled=True)
    with bar:
        pending = _count_finished(bar, [(np.zeros(500), 500)])
        assert bar.count == 0 and len(pending) == 1  # the chunk just dispatched waits
        pending = _count_finished(bar, pending + [(np.zeros(500), 500)])
        assert bar.count == 500
        assert _count_finished(bar, pending + [(np.zeros(500), 300)], keep=0) == []
    assert bar.count == 1300


def test_a_bar_counted_from_the_host_shows_every_step_once_the_program_is_done():
    from dpgmm_ppl.infer._progress import StepBar

    bar = StepBar("MAP", 400, enabled=True, in_program=False)
    with bar:
        bar.report(100, np.float32(1.0))  # nothing is traced, nothing counted
        assert bar.count == 0
        bar.finish()
        bar.finish()  # the second time, nothing is left to count
    assert bar.count == 400


@pytest.mark.slow
def test_nuts_progress_bar_counts_every_iteration_and_changes_nothing(capsys):
    """Two chains of 20 + 10 iterations, one after another: 60 on the bar."""
    common = dict(backend="nuts", num_components=2, num_chains=2, num_warmup=20, num_samples=10,
                  num_init_steps=0, rng_key=5)
    quiet = dpgmm_ppl.fit(two_clusters_1d(2), **common)
    assert capsys.readouterr().err == ""
    shown = dpgmm_ppl.fit(two_clusters_1d(2), progress_bar=True, **common)
    err = capsys.readouterr().err
    assert "NUTS" in err and "60/60" in err
    for name in quiet.samples:
        np.testing.assert_array_equal(quiet.samples[name], shown.samples[name], err_msg=name)
    with pytest.raises(TypeError, match="progress_bar must be True or False, got 'yes'"):
        dpgmm_ppl.fit(two_clusters_1d(0), backend="map", progress_bar="yes")


# --- covariance (the option of dpgmm_ppl.fit added alongside this command) ---------------

def hand_made_full_covariance_fit(data):
    """A 1-chain x 3-draw fit of 2-d data with full covariances, no inference involved."""
    rng = np.random.default_rng(8)
    corr = np.linalg.cholesky(np.array([[1.0, 0.5], [0.5, 1.0]]))
    scale = rng.uniform(0.4, 0.6, size=(1, 3, 3, 2))
    samples = {
        "alpha": np.full((1, 3), 0.7),
        "weights": np.tile([0.6, 0.38, 0.02], (1, 3, 1)),
        "loc": np.r_[TRUE_LOC_2D, [[0.0, 0.0]]] + rng.normal(0, 0.01, (1, 3, 3, 2)),
        "scale": scale,
        "corr_cholesky": np.broadcast_to(corr, (1, 3, 3, 2, 2)),
        "scale_tril": scale[..., None] * corr,
    }
    return Fit(backend="nuts", samples={k: np.asarray(v, np.float32) for k, v in samples.items()},
               sample_stats={"lp": rng.normal(size=(1, 3)).astype(np.float32)},
               data=np.asarray(data, np.float32), num_components=3, priors=dpgmm_ppl.Priors(),
               covariance="full")


def test_fit_full_covariance_from_the_command_line(tmp_path, capsys, monkeypatch):
    """COVARIANCE CHECK: ``--covariance full`` reaches ``dpgmm_ppl.fit``, and the
    summary and the netCDF file hold a fit with full covariances. The fit itself
    is made by hand: fitting full covariances is tested with the model."""
    import inspect

    assert "covariance" in inspect.signature(dpgmm_ppl.fit).parameters
    values = two_clusters_2d(5)
    csv = plain_csv(tmp_path / "xy.csv", values, ["a", "b"])
    calls = []

    def fit(data, **kwargs):
        calls.append(kwargs)
        return hand_made_full_covariance_fit(data)

    monkeypatch.setattr(dpgmm_ppl, "fit", fit)
    out = tmp_path / "out"
    code, _, err = run(["fit", csv, "--out", out, "--covariance", "full", "--backend", "nuts",
                        "--no-progress", "--no-figures"], capsys)
    assert code == 0, err
    assert calls[0]["covariance"] == "full" and calls[0]["backend"] == "nuts"
    summary = json.loads((out / "summary.json").read_text())
    loaded = dpgmm_ppl.load(out / "fit.nc")
    assert summary["options"]["covariance"] == "full" == loaded.covariance
    assert [c["component"] for c in summary["components"]] == [0, 1, 2]
    tril = np.asarray(loaded.samples["scale_tril"][0], np.float64)
    expected = np.mean(tril @ np.swapaxes(tril, -1, -2), axis=0)
    for row in summary["components"]:
        np.testing.assert_allclose(row["covariance"], expected[row["component"]], rtol=1e-6)
        np.testing.assert_allclose(row["loc"], best_chain_mean(loaded, "loc")[row["component"]])
