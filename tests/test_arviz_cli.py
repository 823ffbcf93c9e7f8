"""ArviZ output (on whichever ArviZ line is installed), and the demo and compare commands.

``dpgmm-ppl fit`` is tested in ``test_cli.py``; the runs here pass
``--no-progress``, so that their programs are the ones the backends compile
without a bar (and stay in JAX's persistent compilation cache).
"""

import json

import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl._arviz_compat import arviz, is_datatree
from dpgmm_ppl.cli import main


@pytest.fixture(scope="module")
def small_fit():
    rng = np.random.default_rng(5)
    data = np.concatenate([rng.normal(-3, 0.5, 150), rng.normal(2, 1.0, 100)]).astype(np.float32)
    return dpgmm_ppl.fit(data, num_components=4, num_chains=2, num_steps=400, history_every=100)


def _group(data, name):
    return data[name] if is_datatree() else getattr(data, name)


def test_to_arviz_holds_every_group_with_the_fit_values(small_fit):
    data = small_fit.to_arviz()
    posterior = _group(data, "posterior")
    assert dict(posterior["loc"].sizes) == {"chain": 2, "draw": 1, "component": 4}
    np.testing.assert_array_equal(posterior["weights"].values, small_fit.samples["weights"])
    stats = _group(data, "sample_stats")
    np.testing.assert_array_equal(stats["lp"].values, small_fit.sample_stats["lp"])
    log_likelihood = _group(data, "log_likelihood")["obs"].values
    assert log_likelihood.shape == (2, 1, 250)
    # The pointwise log-likelihood sums to the mixture log-likelihood of each restart.
    for chain in range(2):
        expected = small_fit.log_predictive_density(small_fit.data, chain=chain)
        np.testing.assert_allclose(log_likelihood[chain, 0], expected, rtol=1e-5)
    np.testing.assert_array_equal(_group(data, "observed_data")["obs"].values, small_fit.data)
    optimization = _group(data, "optimization")
    np.testing.assert_array_equal(optimization["loss"].values, small_fit.losses)
    np.testing.assert_array_equal(optimization["frame"].values, [100, 200, 300, 400])


def test_arviz_summary_reads_the_posterior(small_fit):
    az = arviz()
    summary = az.summary(small_fit.to_arviz(), var_names=["alpha"], kind="stats")
    means = np.asarray(summary["mean"], dtype=float)
    assert means.size == 1
    # Summary rounds to 2 decimals on ArviZ 0.x; compare at that precision.
    np.testing.assert_allclose(means[0], small_fit.samples["alpha"].mean(), atol=0.006)


def test_demo_command_writes_figures_and_reports_a_close_fit(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--num-steps", "1500", "--num-components", "10",
                 "--no-compare", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for name in ("density.png", "weights.png", "loss.png", "training.gif"):
        assert (out / name).stat().st_size > 1000, name
    gap = float(printed.split("gap ")[1].split(" nats")[0])
    # A short run on 19,000 points: well within 0.01 nats of the truth.
    assert 0 <= gap < 0.01 or abs(gap) < 0.002


# Slow (all three backends): CI's first leg runs it.
@pytest.mark.slow
def test_compare_command_writes_table_figure_and_fits(tmp_path, capsys):
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(-3, 0.7, 120), rng.normal(2, 1.0, 80)])
    csv = tmp_path / "points.csv"
    csv.write_text("x,unused\n" + "\n".join(f"{v},{i}" for i, v in enumerate(values)) + "\n")
    out = tmp_path / "out"
    args = ["compare", str(csv), "--columns", "x", "--out", str(out), "--quick",
            "--num-chains", "2", "--num-components", "3", "--no-progress"]
    assert main(args) == 0
    table = json.loads((out / "compare.json").read_text())
    assert table["backend"] == ["map", "svi", "nuts"]
    for name in table["backend"]:
        loaded = dpgmm_ppl.load(out / f"compare-{name}.nc")
        np.testing.assert_allclose(loaded.data, values.astype(np.float32))
        assert loaded.backend == name
    assert (out / "compare-density.png").stat().st_size > 1000
    assert table["divergences"][2] is not None and table["ess_per_second_lp"][2] > 0
    # Existing output is never overwritten without --force.
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
