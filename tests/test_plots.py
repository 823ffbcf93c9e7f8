"""Plots of a Fit: the numbers drawn, not only that drawing runs."""

import dataclasses

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import dpgmm_ppl
from dpgmm_ppl.plots import (
    GRID_SIZE,
    animate_training,
    plot_density,
    plot_loss,
    plot_weights,
    save_figures,
)
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.result import Fit

NUM_STEPS, HISTORY_EVERY = 300, 30


@pytest.fixture(scope="module")
def map_fit():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(-5.0, 1.0, 200), rng.normal(5.0, 1.0, 200)])
    return dpgmm_ppl.fit(
        x, num_components=5, num_chains=2, num_steps=NUM_STEPS, history_every=HISTORY_EVERY
    )


@pytest.fixture
def posterior_fit():
    """A hand-made posterior-backend fit: 2 chains x 3 draws of known parameters."""
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.ones(3), size=(2, 3)).astype(np.float32)
    loc = rng.normal(0.0, 3.0, size=(2, 3, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, size=(2, 3, 3)).astype(np.float32)
    return Fit(
        backend="nuts",
        samples={
            "alpha": np.ones((2, 3), np.float32), "weights": weights, "loc": loc, "scale": scale
        },
        sample_stats={"lp": np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])},  # best chain 1
        data=rng.normal(0.0, 3.0, 300).astype(np.float32),
        num_components=3,
        priors=Priors(),
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def normal_mixture(weights, loc, scale, x):
    """Independent reference: per-component weighted densities, shape (..., K, n)."""
    z = (x - loc[..., None]) / scale[..., None]
    return weights[..., None] * np.exp(-0.5 * z**2) / (scale[..., None] * np.sqrt(2 * np.pi))


def test_density_curve_is_the_predictive_density(map_fit):
    ax = plot_density(map_fit)
    grid, density = ax.lines[0].get_data()
    assert len(grid) == GRID_SIZE
    assert grid[0] < map_fit.data.min() and grid[-1] > map_fit.data.max()
    np.testing.assert_allclose(density, np.exp(map_fit.log_predictive_density(grid)), rtol=1e-6)
    assert abs(np.trapezoid(density, grid) - 1.0) < 1e-2
    # Two well-separated unit-variance halves: a peak near 0.5 / sqrt(2 pi) at each mode.
    for mode in (-5.0, 5.0):
        peak = density[np.abs(grid - mode) < 1.0].max()
        assert 0.14 < peak < 0.26, peak


def test_density_of_another_chain(map_fit):
    ax = plot_density(map_fit, chain=1 - map_fit.best_chain)
    grid, density = ax.lines[0].get_data()
    expected = np.exp(map_fit.log_predictive_density(grid, chain=1 - map_fit.best_chain))
    np.testing.assert_allclose(density, expected, rtol=1e-6)


def test_histogram_is_density_normalised(map_fit):
    ax = plot_density(map_fit)
    heights = np.array([bar.get_height() for bar in ax.patches])
    widths = np.array([bar.get_width() for bar in ax.patches])
    assert len(ax.patches) == 100
    assert abs(np.sum(heights * widths) - 1.0) < 1e-6
    expected, _ = np.histogram(map_fit.data, bins=100, density=True)
    np.testing.assert_allclose(heights, expected, rtol=1e-6)


@pytest.mark.parametrize("threshold", [0.0, 0.01, 0.3])
def test_components_are_the_weighted_normals_above_threshold(map_fit, threshold):
    ax = plot_density(map_fit, component_threshold=threshold)
    grid, mixture = ax.lines[0].get_data()
    best = map_fit.best_chain
    weights = map_fit.samples["weights"][best, 0]
    kept = weights > threshold
    components = np.array([line.get_ydata() for line in ax.lines[1:]])
    assert len(components) == kept.sum()
    expected = normal_mixture(
        weights[kept].astype(float),
        map_fit.samples["loc"][best, 0][kept].astype(float),
        map_fit.samples["scale"][best, 0][kept].astype(float),
        grid,
    )
    np.testing.assert_allclose(components, expected, rtol=1e-6, atol=1e-12)
    assert np.all(components.sum(axis=0) <= mixture * (1 + 1e-4) + 1e-7)
    if threshold == 0.0:  # all components: they add up to the mixture
        np.testing.assert_allclose(components.sum(axis=0), mixture, rtol=1e-4, atol=1e-7)


def test_density_of_a_posterior_fit_averages_draws(posterior_fit):
    ax = plot_density(posterior_fit, component_threshold=0.0)
    grid, mixture = ax.lines[0].get_data()
    s = {k: v.astype(float) for k, v in posterior_fit.samples.items()}
    per_draw = normal_mixture(s["weights"], s["loc"], s["scale"], grid).sum(axis=-2)
    np.testing.assert_allclose(mixture, per_draw.mean(axis=(0, 1)), rtol=1e-4)
    # Components: posterior-mean parameters of the best chain (1).
    mean = {k: s[k][1].mean(axis=0) for k in ("weights", "loc", "scale")}
    components = np.array([line.get_ydata() for line in ax.lines[1:]])
    expected = normal_mixture(mean["weights"], mean["loc"], mean["scale"], grid)
    np.testing.assert_allclose(components, expected, rtol=1e-6, atol=1e-12)


def test_weights_of_map_are_sorted_and_normalised(map_fit):
    ax = plot_weights(map_fit)
    assert len(ax.lines) == 1
    line = ax.lines[0]
    y = line.get_ydata()
    assert line.get_marker() == "o"
    assert np.all(np.diff(y) <= 0)
    assert abs(y.sum() - 1.0) < 1e-5
    expected = np.sort(map_fit.samples["weights"][map_fit.best_chain, 0])[::-1]
    np.testing.assert_allclose(y, expected / expected.sum(), rtol=1e-5)
    other = plot_weights(map_fit, chain=1 - map_fit.best_chain).lines[0].get_ydata()
    expected = np.sort(map_fit.samples["weights"][1 - map_fit.best_chain, 0])[::-1]
    np.testing.assert_allclose(other, expected / expected.sum(), rtol=1e-5)


def test_weights_of_posterior_show_mean_of_sorted_draws(posterior_fit):
    ax = plot_weights(posterior_fit)
    draws = np.sort(posterior_fit.samples["weights"].reshape(-1, 3), axis=-1)[:, ::-1]
    assert len(ax.lines) == draws.shape[0] + 1  # faint draws, then the mean
    y = ax.lines[-1].get_ydata()
    np.testing.assert_allclose(y, draws.mean(axis=0), rtol=1e-5)
    assert np.all(np.diff(y) <= 0) and abs(y.sum() - 1.0) < 1e-5
    one_chain = plot_weights(posterior_fit, chain=0).lines[-1].get_ydata()
    np.testing.assert_allclose(one_chain, draws[:3].mean(axis=0), rtol=1e-5)


def test_loss_draws_each_chain_faintly_under_its_running_mean(map_fit):
    """Each chain's raw loss, faint, then its running mean of ``window`` steps, on a linear
    axis (the loss used to be ``loss - min + 1`` on a log scale; issue 22)."""
    ax = plot_loss(map_fit, window=10)
    assert len(ax.lines) == 2 * map_fit.num_chains
    assert ax.get_yscale() == "linear"
    for chain, losses in enumerate(map_fit.losses.astype(np.float64)):
        raw, mean = ax.lines[2 * chain], ax.lines[2 * chain + 1]
        steps, y = raw.get_data()
        np.testing.assert_array_equal(steps, np.arange(1, NUM_STEPS + 1))
        np.testing.assert_allclose(y, losses, rtol=1e-6)
        assert raw.get_alpha() < 0.5 and mean.get_alpha() is None
        steps, y = mean.get_data()
        np.testing.assert_array_equal(steps, np.arange(10, NUM_STEPS + 1))
        expected = [losses[end - 10 : end].mean() for end in range(10, NUM_STEPS + 1)]
        np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        f"chain {c}" + (" (best)" if c == map_fit.best_chain else "") for c in range(2)
    ]


@pytest.mark.parametrize("max_frames, expected", [(None, NUM_STEPS // HISTORY_EVERY), (4, 4)])
def test_animation_saves_a_gif(map_fit, tmp_path, max_frames, expected):
    animation = animate_training(map_fit, max_frames=max_frames)
    fig = plt.gcf()
    assert len(list(animation.new_frame_seq())) == expected
    path = tmp_path / "training.gif"
    animation.save(path, writer="pillow", dpi=40)
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == expected
    # The last frame drawn is the last history frame: the final fit itself.
    ax = fig.axes[0]
    assert ax.get_title() == f"step {NUM_STEPS}"
    grid, mixture = ax.lines[0].get_data()
    np.testing.assert_allclose(mixture, np.exp(map_fit.log_predictive_density(grid)), rtol=1e-4)
    heights = np.histogram(map_fit.data, bins=100, density=True)[0]
    assert ax.get_ylim()[1] >= heights.max()


def test_save_figures(map_fit, tmp_path):
    out = tmp_path / "figures"
    paths = save_figures(map_fit, out, max_frames=5)
    assert [p.name for p in paths] == ["density.png", "weights.png", "loss.png", "training.gif"]
    for path in paths[:3]:
        with Image.open(path) as image:
            assert image.format == "PNG"
    with Image.open(paths[3]) as gif:
        assert gif.n_frames == 5
    assert plt.get_fignums() == []
    nuts_like = dataclasses.replace(map_fit, losses=None, history=None, history_steps=None)
    assert [p.name for p in save_figures(nuts_like, tmp_path / "b")] == [
        "density.png",
        "weights.png",
    ]


def test_errors(map_fit):
    bare = dataclasses.replace(map_fit, losses=None, history=None)
    with pytest.raises(ValueError, match="losses"):
        plot_loss(bare)
    with pytest.raises(ValueError, match="history"):
        animate_training(bare)
    flat = dataclasses.replace(map_fit, data=np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="1-d"):
        plot_density(flat)
    with pytest.raises(ValueError, match="1-d"):
        plot_density(map_fit, np.zeros((10, 2)))
    with pytest.raises(ValueError, match="chain"):
        plot_density(map_fit, chain=2)
    with pytest.raises(TypeError, match="Fit"):
        plot_weights(map_fit.samples)


def test_predictive_comparison_draws_each_fit_and_bands_only_posteriors(map_fit, posterior_fit):
    from dpgmm_ppl.plots import plot_predictive_comparison

    posterior_fit = dataclasses.replace(posterior_fit, data=map_fit.data)
    fits = {"MAP": map_fit, "NUTS": posterior_fit, "posterior": posterior_fit}
    ax = plot_predictive_comparison(fits, hdi_prob=0.8)
    # A name that already says its backend is not repeated ("NUTS", not "NUTS (nuts)").
    assert [line.get_label() for line in ax.lines] == ["MAP", "NUTS", "posterior (nuts)"]
    grid = ax.lines[0].get_xdata()
    for line, fit in zip(ax.lines, fits.values()):
        np.testing.assert_allclose(
            line.get_ydata(), np.exp(fit.log_predictive_density(grid)), rtol=1e-5
        )
    # One band per posterior fit, none for MAP: its lower edge is the 80% HDI's.
    bands = [c for c in ax.collections if c.get_paths() and c.get_label() != "data"]
    assert len(bands) == 2
    lower = posterior_fit.predictive_density(grid, hdi_prob=0.8).lower
    edge = bands[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(edge[None, :], lower[::10, None], rtol=1e-5, atol=0).any(axis=1).all()
    plt.close(ax.figure)
