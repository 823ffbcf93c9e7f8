"""``Fit.diagnostics()``: divergences, R-hat and bulk ESS of label-invariant quantities,
equal to ArviZ's on the same draws, and in the CLI's ``summary.json`` and stderr."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl import Diagnostics
from dpgmm_ppl._arviz_compat import arviz
from dpgmm_ppl.cli import QUICK_OPTIONS, main
from dpgmm_ppl.diagnostics import (
    MAX_RHAT,
    MIN_ESS_PER_CHAIN,
    diagnose,
    diagnostic_draws,
    diagnostic_points,
)
from dpgmm_ppl.mixtures import mixture_log_density
from dpgmm_ppl.result import Fit
from dpgmm_ppl.sharding import spread_rows

#: The tiny NUTS run of the CLI test, which the direct fit repeats (one compiled program).
NUTS_OPTIONS = {"num_warmup": 100, "num_samples": 100, "num_init_steps": 100,
                "max_tree_depth": 6, "progress_bar": False}


def two_clusters(seed=4):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3.0, 0.6, 35), rng.normal(2.5, 0.8, 25)])


@pytest.fixture(scope="module")
def nuts_fit():
    return dpgmm_ppl.fit(two_clusters(), backend="nuts", num_components=3, num_chains=2,
                         rng_key=5, **NUTS_OPTIONS)


def hand_made_fit(loc, *, backend="nuts", data=None, diverging=None, reached=None, seed=0):
    """A fit of 1-d data whose draws are ``loc`` ``(chain, draw, K)``, unit scales, equal weights;
    ``alpha`` and ``lp`` independent standard draws."""
    rng = np.random.default_rng(seed)
    loc = np.asarray(loc, np.float64)
    lead = loc.shape[:2]
    samples = {"alpha": rng.gamma(2.0, size=lead), "loc": loc, "scale": np.ones_like(loc),
               "weights": np.full_like(loc, 1.0 / loc.shape[-1])}
    stats = {"lp": rng.normal(size=lead)}
    if diverging is not None:
        stats["diverging"] = diverging
    if reached is not None:
        stats["reached_max_treedepth"] = reached
    data = np.linspace(-4.0, 4.0, 41) if data is None else data
    return Fit(backend, {k: v.astype(np.float32) for k, v in samples.items()}, stats,
               np.asarray(data, np.float32), loc.shape[-1], dpgmm_ppl.Priors())


# --- the numbers ------------------------------------------------------------------------

def test_rhat_and_ess_are_arvizs_on_the_label_invariant_draws(nuts_fit):
    az = arviz()
    result = nuts_fit.diagnostics()
    draws = diagnostic_draws(nuts_fit)
    assert result.quantities == ("alpha", "lp", "log_density(q10)", "log_density(q50)",
                                 "log_density(q90)")
    for name, rhat, ess in zip(result.quantities, result.rhat, result.ess):
        assert rhat == pytest.approx(float(az.rhat(draws[name])), rel=1e-12), name
        assert ess == pytest.approx(float(az.ess(draws[name], method="bulk")), rel=1e-12), name
    assert result.max_rhat == max(result.rhat) and result.min_ess == min(result.ess)
    assert result.divergences == int(np.sum(nuts_fit.sample_stats["diverging"]))
    # The draws are what they say: alpha, lp, the log density at the data quantiles.
    np.testing.assert_array_equal(draws["alpha"], nuts_fit.samples["alpha"])
    np.testing.assert_array_equal(draws["lp"], nuts_fit.sample_stats["lp"])
    points = np.quantile(nuts_fit.data, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(diagnostic_points(nuts_fit), points, rtol=1e-6)
    expected = mixture_log_density(nuts_fit.samples, points.astype(np.float32))
    np.testing.assert_allclose(draws["log_density(q90)"], expected[..., 2], rtol=1e-6)


def test_independent_chains_pass_and_chains_in_other_places_fail():
    rng = np.random.default_rng(1)
    # 4 chains x 500 independent draws of the same mixture: R-hat near 1, ESS near 2,000.
    iid = hand_made_fit(np.array([-2.0, 2.0]) + 0.2 * rng.normal(size=(4, 500, 2)),
                        diverging=np.zeros((4, 500), bool))
    passed = iid.diagnostics()
    assert passed.is_ok and passed.problems == ()
    assert passed.max_rhat < MAX_RHAT and passed.min_ess > 0.7 * 2000
    # The same draws with chain 3's mixture moved by one unit: alpha and lp still
    # agree, the log densities at the data points do not.
    loc = np.array(iid.samples["loc"])
    loc[3] += 1.0
    moved = dataclasses.replace(iid, samples={**iid.samples, "loc": loc})
    failed = moved.diagnostics()
    rhat = dict(zip(failed.quantities, failed.rhat))
    assert rhat["alpha"] == passed.rhat[0] and rhat["alpha"] < MAX_RHAT
    assert max(rhat["log_density(q10)"], rhat["log_density(q90)"]) > 1.2
    assert not failed.is_ok and failed.problems[0].startswith("R-hat of log_density(q")
    assert failed.min_ess < MIN_ESS_PER_CHAIN * 4


def test_rows_spread_over_processes_are_watched_through_alpha_and_lp_only():
    rng = np.random.default_rng(1)
    iid = hand_made_fit(np.array([-2.0, 2.0]) + 0.2 * rng.normal(size=(4, 500, 2)),
                        diverging=np.zeros((4, 500), bool))
    spread = dataclasses.replace(iid, data=spread_rows(np.shape(iid.data), np.float32))
    result = spread.diagnostics()
    assert result.quantities == ("alpha", "lp")
    # The same R-hat and ESS as with the data held: the points are only left out.
    held = dict(zip(iid.diagnostics().quantities, iid.diagnostics().rhat))
    assert result.rhat == (held["alpha"], held["lp"])
    assert result.is_ok and not any("nan" in problem for problem in result.problems)


def test_a_single_chain_that_changes_half_way_is_flagged():
    """With one chain, its two halves stand in for two chains."""
    rng = np.random.default_rng(2)
    loc = np.array([-2.0, 2.0]) + 0.2 * rng.normal(size=(1, 2000, 2))
    steady = hand_made_fit(loc).diagnostics()
    assert steady.max_rhat < MAX_RHAT
    loc[0, 1000:] += 1.5  # the mixture jumps in the middle of the run
    jumped = hand_made_fit(loc).diagnostics()
    assert jumped.max_rhat > 1.5
    # It is ArviZ's R-hat of the two halves taken as two chains.
    draws = diagnostic_draws(hand_made_fit(loc))["log_density(q10)"]
    assert jumped.rhat[2] == pytest.approx(float(arviz().rhat(draws.reshape(2, 1000))))


def test_relabelling_the_components_changes_nothing():
    rng = np.random.default_rng(3)
    fit = hand_made_fit(np.array([-2.0, 0.5, 2.0]) + 0.3 * rng.normal(size=(2, 200, 3)))
    order = np.argsort(rng.random((2, 200, 3)), axis=-1)
    shuffled = {name: np.take_along_axis(value, order, axis=-1) if value.ndim == 3 else value
                for name, value in fit.samples.items()}
    before, after = fit.diagnostics(), dataclasses.replace(fit, samples=shuffled).diagnostics()
    np.testing.assert_allclose(after.rhat, before.rhat, rtol=1e-4)
    np.testing.assert_allclose(after.ess, before.ess, rtol=1e-3)


def test_map_restarts_have_no_rhat_ess_or_divergences():
    fit = hand_made_fit(np.array([[[-2.0, 2.0]], [[-1.9, 2.1]]]), backend="map")
    result = fit.diagnostics()
    assert (result.divergences, result.max_rhat, result.min_ess) == (None, None, None)
    assert result.rhat == (None,) * 5 and result.is_ok
    assert json.loads(json.dumps(result.to_dict()))["max_rhat"] is None


def test_vector_data_are_watched_at_points_of_low_typical_and_high_density():
    """One standard normal component: the log density falls with the distance from 0,
    so the points are the data points at the 90/50/10% quantiles of the distance."""
    rng = np.random.default_rng(4)
    data = rng.normal(size=(301, 2)).astype(np.float32)
    samples = {"alpha": np.ones((1, 4)), "weights": np.ones((1, 4, 1)),
               "loc": np.zeros((1, 4, 1, 2)), "scale": np.ones((1, 4, 1, 2))}
    fit = Fit("nuts", {k: v.astype(np.float32) for k, v in samples.items()},
              {"lp": np.zeros((1, 4))}, data, 1, dpgmm_ppl.Priors())
    points = diagnostic_points(fit)
    distance = np.linalg.norm(data, axis=1)
    order = np.argsort(distance)  # 301 points: the quantiles are data points 30, 150, 270
    np.testing.assert_array_equal(points, data[order[[270, 150, 30]]])


def test_the_result_is_immutable_short_and_plain_json():
    result = Diagnostics("nuts", 2, 100, 3, ("alpha", "lp"), (1.2, float("nan")), (150.0, 90.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.divergences = 0
    assert repr(result) == ("Diagnostics(nuts, 2 chains x 100 draws: divergences 3, "
                            "max R-hat nan (lp), min ESS 90 (lp))")
    record = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert record["max_rhat"] is None and record["rhat"] == {"alpha": 1.2, "lp": None}
    assert record["min_ess"] == 90.0 and record["treedepth_shares"] is None
    assert record["thresholds"] == {"max_rhat": 1.01, "min_ess": 200, "max_treedepth_share": 0.1}
    assert record["problems"] == ["3 divergent transitions after warmup",
                                  "R-hat of lp is nan > 1.01",
                                  "bulk ESS of lp is 90 < 200 (100 per chain)"]


def test_irreversible_stops_are_reported_but_are_not_a_problem(nuts_fit):
    result = nuts_fit.diagnostics()
    assert result.irreversible == int(np.sum(nuts_fit.sample_stats["irreversible"]))
    assert f"irreversible {result.irreversible}, max R-hat" in repr(result)
    assert result.to_dict()["irreversible"] == result.irreversible
    stopped = dataclasses.replace(result, irreversible=50)
    assert stopped.problems == result.problems


def test_a_non_fit_is_refused():
    with pytest.raises(TypeError, match="fit must be a dpgmm_ppl.Fit, got dict"):
        diagnose({"alpha": np.ones((1, 1))})


# --- the command line -------------------------------------------------------------------

def _run(argv, capsys):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def test_summary_json_of_a_nuts_fit_has_its_diagnostics(tmp_path, capsys, monkeypatch, nuts_fit):
    monkeypatch.setitem(QUICK_OPTIONS, "nuts", {"num_init_steps": 100, "max_tree_depth": 6})
    csv = tmp_path / "x.csv"
    csv.write_text("x\n" + "\n".join(repr(float(v)) for v in two_clusters()) + "\n")
    out = tmp_path / "out"
    code, _, err = _run(["fit", csv, "--backend", "nuts", "--quick", "--num-components", 3,
                         "--num-chains", 2, "--num-warmup", 100, "--num-samples", 100,
                         "--seed", 5, "--no-progress", "--no-figures", "--out", out], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    expected = dpgmm_ppl.load(out / "fit.nc").diagnostics()
    assert summary["divergences"] == expected.divergences
    assert summary["max_rhat"] == pytest.approx(expected.max_rhat, rel=1e-12)
    assert summary["min_ess"] == pytest.approx(expected.min_ess, rel=1e-12)
    assert summary["diagnostics"] == json.loads(json.dumps(expected.to_dict()))
    # The same fit as in this process: the same numbers.
    assert summary["max_rhat"] == pytest.approx(nuts_fit.diagnostics().max_rhat, rel=1e-12)
    line = next(line for line in err if line.startswith("diagnostics: "))
    assert f"divergences {expected.divergences}," in line
    assert f"max R-hat {expected.max_rhat:.3f}" in line
    assert f"min bulk ESS {expected.min_ess:.0f}" in line
    assert [line[len("warning: "):] for line in err if line.startswith("warning: ")] \
        == list(expected.problems)


def test_a_bad_fit_gets_a_warning_line_and_map_gets_none(tmp_path, capsys, monkeypatch):
    """Hand-made fits through the command: chains that disagree are warned about on
    stderr; MAP's summary has None where the numbers are undefined."""
    rng = np.random.default_rng(6)
    loc = np.array([-2.0, 2.0]) + 0.2 * rng.normal(size=(2, 100, 2))
    loc[1] += 1.0
    reached = np.zeros((2, 100), bool)
    reached[0, ::10] = True  # 10%: not flagged
    reached[1, 60:] = True  # 40%: flagged
    fits = {"nuts": hand_made_fit(loc, diverging=np.eye(2, 100, dtype=bool), reached=reached),
            "map": hand_made_fit(loc[:, :1], backend="map")}
    csv = tmp_path / "x.csv"
    csv.write_text("x\n" + "\n".join(repr(float(v)) for v in np.linspace(-4.0, 4.0, 41)) + "\n")
    for backend, fit in fits.items():
        monkeypatch.setattr(dpgmm_ppl, "fit", lambda data, fit=fit, **kwargs: fit)
        out = tmp_path / backend
        code, _, err = _run(["fit", csv, "--backend", backend, "--no-progress", "--no-figures",
                             "--out", out], capsys)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        warnings = [line for line in err if line.startswith("warning: ")]
        if backend == "nuts":
            assert summary["divergences"] == 2 and summary["max_rhat"] > 1.2
            assert warnings[0] == "warning: 2 divergent transitions after warmup"
            assert warnings[1].startswith("warning: R-hat of log_density(q")
            assert summary["diagnostics"]["treedepth_shares"] == [0.1, 0.4]
            assert warnings[-1] == ("warning: chain 1 reached the maximum tree depth in 40% "
                                    "of its draws (> 10%)")
            assert sum("tree depth" in line for line in warnings) == 1
        else:
            assert (summary["divergences"], summary["max_rhat"], summary["min_ess"]) == (None,) * 3
            assert any(line.startswith("diagnostics: divergences n/a, max R-hat n/a, "
                                       "min bulk ESS n/a") for line in err)
            assert warnings == []
