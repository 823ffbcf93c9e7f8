"""Fit's methods against direct numpy computations; save/load; compare; file loading."""

import dataclasses

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp, softmax

import dpgmm_ppl
from dpgmm_ppl.cli import load_table, main
from dpgmm_ppl.result import Fit


def hand_made_fit(backend="nuts"):
    """A 2-chain x 3-draw fit with known parameters, no inference involved."""
    rng = np.random.default_rng(11)
    weights = rng.dirichlet(np.ones(3), size=(2, 3)).astype(np.float32)
    loc = rng.normal(0, 3, size=(2, 3, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, size=(2, 3, 3)).astype(np.float32)
    return Fit(
        backend=backend,
        samples={"alpha": np.ones((2, 3), np.float32), "weights": weights, "loc": loc, "scale": scale},
        sample_stats={"lp": rng.normal(size=(2, 3)).astype(np.float32)},
        data=rng.normal(size=40).astype(np.float32),
        num_components=3,
        priors=dpgmm_ppl.Priors(),
    )


def per_draw_log_density(fit, x):
    w, m, s = (fit.samples[k].reshape(-1, 3) for k in ("weights", "loc", "scale"))
    return logsumexp(np.log(w)[:, None, :] + stats.norm.logpdf(x[None, :, None], m[:, None], s[:, None]), axis=-1)


def test_log_predictive_density_averages_densities_over_draws():
    fit = hand_made_fit()
    x = np.linspace(-6, 6, 25).astype(np.float32)
    expected = logsumexp(per_draw_log_density(fit, x), axis=0) - np.log(6)
    np.testing.assert_allclose(fit.log_predictive_density(x), expected, rtol=1e-5)
    first = logsumexp(per_draw_log_density(fit, x)[:3], axis=0) - np.log(3)
    np.testing.assert_allclose(fit.log_predictive_density(x, chain=0), first, rtol=1e-5)


def test_predictive_density_band_is_the_hdi_of_the_draws():
    fit = hand_made_fit()
    grid = np.linspace(-6, 6, 30).astype(np.float32)
    band = fit.predictive_density(grid, hdi_prob=0.5)
    densities = np.exp(per_draw_log_density(fit, grid))
    np.testing.assert_allclose(band.mean, densities.mean(0), rtol=1e-5)
    # The 50% HDI of 6 values holds 3 of them, and is the narrowest such window.
    ordered = np.sort(densities, axis=0)
    widths = ordered[2:] - ordered[:-2]
    np.testing.assert_allclose(band.upper - band.lower, widths.min(0), rtol=1e-5, atol=1e-9)
    tolerance = 1e-5 * densities.max(0)
    inside = (densities >= band.lower - tolerance) & (densities <= band.upper + tolerance)
    assert np.all(inside.sum(0) >= 3)


def test_map_band_collapses_onto_the_line():
    fit = hand_made_fit(backend="map")
    fit = dataclasses.replace(fit, samples={k: v[:, :1] for k, v in fit.samples.items()},
                              sample_stats={"lp": np.array([[0.0], [1.0]])})
    band = fit.predictive_density(np.linspace(-3, 3, 9))
    np.testing.assert_array_equal(band.lower, band.upper)
    np.testing.assert_allclose(band.mean, band.lower, rtol=1e-6)
    # MAP uses its best restart (highest lp): chain 1.
    np.testing.assert_allclose(np.log(band.mean), fit.log_predictive_density(np.linspace(-3, 3, 9), chain=1), rtol=1e-5)


def test_cluster_probabilities_and_predict_match_numpy():
    fit = hand_made_fit()
    x = np.linspace(-5, 5, 17).astype(np.float32)
    w, m, s = (fit.samples[k].reshape(-1, 3) for k in ("weights", "loc", "scale"))
    joint = np.log(w)[:, None, :] + stats.norm.logpdf(x[None, :, None], m[:, None], s[:, None])
    expected = softmax(joint, axis=-1).mean(0)
    probabilities = fit.cluster_probabilities(x)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fit.predict(x), expected.argmax(1))


def test_num_components_used_counts_weights_above_threshold():
    fit = hand_made_fit()
    np.testing.assert_array_equal(fit.num_components_used(0.3), (fit.samples["weights"] > 0.3).sum(-1))
    with pytest.raises(ValueError, match="threshold"):
        fit.num_components_used(1.5)


def test_save_and_load_round_trip_every_group(tmp_path):
    data = np.random.default_rng(0).normal(size=120).astype(np.float32)
    fit = dpgmm_ppl.fit(data, num_components=3, num_chains=2, num_steps=120, history_every=50,
                        priors=dpgmm_ppl.Priors(alpha_rate=2.0))
    path = fit.save(tmp_path / "fit.nc")
    loaded = dpgmm_ppl.load(path)
    for name in fit.samples:
        np.testing.assert_array_equal(loaded.samples[name], fit.samples[name])
    for name in fit.sample_stats:
        np.testing.assert_array_equal(loaded.sample_stats[name], fit.sample_stats[name])
    for name in fit.history:
        np.testing.assert_array_equal(loaded.history[name], fit.history[name])
    np.testing.assert_array_equal(loaded.losses, fit.losses)
    np.testing.assert_array_equal(loaded.history_steps, fit.history_steps)
    np.testing.assert_array_equal(loaded.data, fit.data)
    np.testing.assert_array_equal(loaded.rng_key, fit.rng_key)
    assert loaded.backend == "map" and loaded.num_components == 3
    assert loaded.priors.alpha_rate == 2.0
    np.testing.assert_array_equal(loaded.priors.loc_mean, fit.priors.loc_mean)
    assert loaded.options["num_steps"] == 120 and loaded.timing == fit.timing
    x = np.linspace(-2, 2, 5)
    np.testing.assert_array_equal(loaded.log_predictive_density(x), fit.log_predictive_density(x))
    assert fit.names is None and loaded.names is None


def test_the_data_s_column_names_survive_save_and_load(tmp_path):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(
        np.random.default_rng(1).normal(size=(60, 2)), columns=["eruptions", "waiting"]
    )
    fit = dpgmm_ppl.fit(frame, num_components=2, num_steps=50, history_every=50)
    assert fit.names == ("eruptions", "waiting")
    assert dpgmm_ppl.load(fit.save(tmp_path / "named.nc")).names == ("eruptions", "waiting")


def test_load_refuses_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        dpgmm_ppl.load(tmp_path / "missing.nc")
    import xarray as xr

    xr.Dataset({"a": ("x", np.zeros(3))}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(ValueError, match="dpgmm_ppl"):
        dpgmm_ppl.load(tmp_path / "other.nc")


def test_compare_tabulates_each_backend():
    rng = np.random.default_rng(2)
    data = np.concatenate([rng.normal(-3, 1, 150), rng.normal(3, 1, 150)]).astype(np.float32)
    heldout = np.concatenate([rng.normal(-3, 1, 150), rng.normal(3, 1, 150)]).astype(np.float32)
    table = dpgmm_ppl.compare(data, backends=("map",), heldout=heldout, num_components=4,
                              num_chains=2, backend_options={"map": {"num_steps": 400}})
    fit = table.fits["map"]
    assert table["backend"] == ["map"]
    np.testing.assert_allclose(table["heldout_log_density"][0], fit.log_predictive_density(heldout).mean())
    assert table["alpha"][0] == pytest.approx(float(fit.samples["alpha"][fit.best_chain, 0]))
    assert table["components_used"][0] == pytest.approx(fit.num_components_used(0.01).mean())
    # The true mixture scores about -2.1 per point; a good fit is within 0.05.
    truth = np.mean(np.log(0.5 * stats.norm.pdf(heldout, -3, 1) + 0.5 * stats.norm.pdf(heldout, 3, 1)))
    assert abs(table["heldout_log_density"][0] - truth) < 0.05
    assert "heldout_log_density" in table.to_string()
    with pytest.raises(ValueError, match="heldout"):
        dpgmm_ppl.compare(data, backends=("map",), heldout=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="backends"):
        dpgmm_ppl.compare(data, backends=("gibbs",))


@pytest.mark.parametrize(
    "content, suffix, fragment",
    [
        (None, ".csv", "no such file"),
        (b"", ".csv", "empty"),
        (b"x,y\n1,2\n3,abc\n", ".csv", "line 3 holds a non-numeric"),
        (b"x,y\n1,2\n3\n", ".csv", "line 3 has 1 fields"),
        (b"x\n", ".csv", "at least one data row"),
    ],
)
def test_bad_files_get_one_clear_line_and_exit_code_2(tmp_path, capsys, content, suffix, fragment):
    path = tmp_path / f"data{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=fragment):
        load_table(path)
    assert main(["compare", str(path), "--out", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and fragment in message


def test_npy_files_never_unpickle(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numeric NPY"):
        load_table(path)
    good = tmp_path / "good.npy"
    np.save(good, np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(load_table(good), np.arange(6.0).reshape(3, 2))
    csv = tmp_path / "two.csv"
    csv.write_text("a,b,c\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(load_table(csv, ["c", "a"]), [[3, 1], [6, 4]])
