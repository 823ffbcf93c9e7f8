"""One checker of a fit's arguments (``dpgmm_ppl.options``) behind every entry point.

``dpgmm_ppl.fit``, ``dpgmm_ppl.compare``, the scikit-learn estimator and the
``dpgmm-ppl`` command must refuse the same bad option with the same message
(naming the argument as each of them spells it), and before anything is
traced or written.
"""

import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl.cli import main
from dpgmm_ppl.cli._commands import FLAGS
from dpgmm_ppl.cli._fit import backend_options as cli_backend_options
from dpgmm_ppl.cli._fit import run_fit
from dpgmm_ppl.covariance import COVARIANCE_STRUCTURES
from dpgmm_ppl.infer import BACKENDS
from dpgmm_ppl.options import check_counts, check_fit_arguments, resolve_options

sklearn_module = pytest.importorskip("dpgmm_ppl.sklearn")
DirichletProcessGMM = sklearn_module.DirichletProcessGMM

X = np.stack([np.linspace(-3.0, 3.0, 12), np.linspace(1.0, 2.0, 12) ** 2], axis=1)


@pytest.fixture(autouse=True)
def nothing_is_traced(monkeypatch):
    """Every error below must come before the log-density is built."""
    def must_not_build(*args, **kwargs):
        raise AssertionError("the log-density was built before the arguments were checked")

    monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", must_not_build)


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "points.csv"
    rows = "\n".join(f"{a!r},{b!r}" for a, b in X.tolist())
    path.write_text("a,b\n" + rows + "\n")
    return path


def error_of(call):
    """``(type, message)`` of the error ``call()`` raises."""
    with pytest.raises((ValueError, TypeError)) as caught:
        call()
    return type(caught.value), str(caught.value)


def cli_error(argv, capsys):
    """The message of the one error line of ``dpgmm-ppl ARGV`` (exit status 2)."""
    assert main([str(arg) for arg in argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    prefix = f"dpgmm-ppl {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


def test_an_unknown_option_gets_one_error_from_every_entry_point():
    expected = (
        TypeError,
        "backend 'map' does not take the option(s) ['learning_rate']; its options are "
        f"{sorted(BACKENDS['map'].defaults)}",
    )
    assert error_of(lambda: dpgmm_ppl.fit(X, backend="map", learning_rate=0.1)) == expected
    assert error_of(lambda: dpgmm_ppl.compare(
        X, backends=("map",), backend_options={"map": {"learning_rate": 0.1}})) == expected
    estimator = DirichletProcessGMM(backend="map", backend_options={"learning_rate": 0.1})
    assert error_of(lambda: estimator.fit(X)) == expected
    # The command has flags, not free options: its options pass through the same check.
    assert error_of(lambda: cli_backend_options("map", learning_rate=0.1)) == expected


def test_a_flag_of_another_backend_is_the_commands_own_rule(csv_file, tmp_path, capsys):
    # Every backend's run lengths are flags of `dpgmm-ppl fit`; the command says which apply.
    takers = " or ".join(name for name, b in BACKENDS.items() if "num_steps" in b.defaults)
    message = cli_error(["fit", csv_file, "--out", tmp_path / "out", "--backend", "nuts",
                         "--num-steps", 10], capsys)
    assert message == f"--num-steps applies to --backend {takers}, not nuts"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("backend", ["map", "svi"])
def test_a_negative_num_steps_gets_one_error_from_every_entry_point(
        backend, csv_file, tmp_path, capsys):
    expected = (ValueError, "num_steps must be an integer >= 1, got -5")
    assert error_of(lambda: dpgmm_ppl.fit(X, backend=backend, num_steps=-5)) == expected
    assert error_of(lambda: dpgmm_ppl.compare(
        X, backends=(backend,), backend_options={backend: {"num_steps": -5}})) == expected
    estimator = DirichletProcessGMM(backend=backend, backend_options={"num_steps": -5})
    assert error_of(lambda: estimator.fit(X)) == expected
    # The estimator's max_iter is num_steps, and its error names max_iter.
    estimator = DirichletProcessGMM(backend=backend, max_iter=-5)
    assert error_of(lambda: estimator.fit(X)) == (
        ValueError, "max_iter must be an integer >= 1, got -5")
    # The command names the flag the user typed.
    message = cli_error(["fit", csv_file, "--out", tmp_path / "out", "--backend", backend,
                         "--num-steps", -5], capsys)
    assert message == "--" + expected[1].replace("num_steps", "num-steps")
    assert not (tmp_path / "out").exists()


def test_the_demo_checks_num_steps_as_fit_does(tmp_path, capsys):
    message = cli_error(["demo", "--num-steps", -5, "--out", tmp_path / "out"], capsys)
    assert message == "--num-steps must be an integer >= 1, got -5"
    assert not (tmp_path / "out").exists()


def test_a_bad_covariance_gets_one_error_from_every_entry_point(csv_file, tmp_path, capsys):
    names = tuple(COVARIANCE_STRUCTURES)
    expected = (ValueError, f"covariance must be one of {names}, got 'tied'")
    assert error_of(lambda: dpgmm_ppl.fit(X, covariance="tied")) == expected
    assert error_of(lambda: dpgmm_ppl.compare(X, backends=("map",), covariance="tied")) == expected
    assert error_of(lambda: run_fit(csv_file, out_dir=tmp_path / "out",
                                    covariance="tied")) == expected
    assert not (tmp_path / "out").exists()
    # The estimator names its parameter and lists the names sorted, as scikit-learn does.
    estimator = DirichletProcessGMM(covariance_type="tied")
    assert error_of(lambda: estimator.fit(X)) == (
        ValueError, f"covariance_type must be one of {sorted(names)}, got 'tied'")
    # On the command line, argparse offers the registered structures.
    with pytest.raises(SystemExit) as exit_:
        main(["fit", str(csv_file), "--covariance", "tied"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tied'" in err
    assert all(repr(name) in err or name in err for name in names)


def test_counts_are_named_as_each_entry_point_spells_them(capsys, tmp_path):
    assert error_of(lambda: dpgmm_ppl.fit(X, num_chains=0)) == (
        ValueError, "num_chains must be an integer >= 1, got 0")
    assert error_of(lambda: DirichletProcessGMM(n_chains=0).fit(X)) == (
        ValueError, "n_chains must be an integer >= 1, got 0")
    assert cli_error(["compare", "--num-chains", 0, "--out", tmp_path / "out"], capsys) == (
        "--num-chains must be an integer >= 1, got 0")
    assert check_counts(3, 2) == (3, 2)
    assert error_of(lambda: check_counts(3, 1.5, names=FLAGS)) == (
        TypeError, "--num-chains must be an integer >= 1, got 1.5 of type float")


def test_resolve_options_fills_the_defaults_and_renames_only_the_named_argument():
    resolved = resolve_options("svi", {"num_steps": 7})
    assert resolved == {**BACKENDS["svi"].defaults, "num_steps": 7}
    assert resolve_options(BACKENDS["svi"], {"num_steps": 7}) == resolved
    # The error opens with the option's name: only that is spelled as the caller asks.
    assert error_of(lambda: resolve_options("svi", {"num_samples": 0}, names=FLAGS)) == (
        ValueError, "--num-samples must be an integer >= 1, got 0")
    assert error_of(lambda: resolve_options("svi", {"guide": "flow"}, names=FLAGS)) == (
        ValueError, "guide must be one of ['diagonal', 'lowrank', 'full'], got 'flow'")
    assert error_of(lambda: resolve_options("svi", {"batch_size": 13}, num_points=12)) == (
        ValueError, "batch_size must be at most the number of points (12), got 13")
    assert resolve_options("svi", {"batch_size": 12}, num_points=12)["batch_size"] == 12
    assert error_of(lambda: resolve_options("hmc", {})) == (
        ValueError, f"backend must be one of {sorted(BACKENDS)}, got 'hmc'")


def test_check_fit_arguments_resolves_priors_covariance_and_key():
    checked = check_fit_arguments(X, num_components=4, num_chains=2, rng_key=3, priors=None,
                                  covariance="full")
    assert (checked.num_components, checked.num_chains, checked.covariance) == (4, 2, "full")
    assert repr(checked.priors) == repr(dpgmm_ppl.Priors())  # the defaults, none given
    np.testing.assert_array_equal(np.asarray(checked.rng_key), [0, 3])
    # Scalar data have one scale per component whatever the structure: "diag".
    scalar = check_fit_arguments(X[:, 0], num_components=4, num_chains=2, rng_key=3,
                                 priors=None, covariance="spherical")
    assert scalar.covariance == "diag"


def test_the_help_describes_every_registered_backend(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, backend in BACKENDS.items():
        assert backend.description, name
        assert f"{name}: {' '.join(backend.description.split())}" in text
    assert "{" + ",".join(COVARIANCE_STRUCTURES) + "}" in text
