"""The covariance-structure protocol: a structure defined here runs end to end.

The "tied" structure below (one covariance matrix shared by every component:
shared per-dimension scales times a shared LKJ correlation) lives in this file
only. Registered in :data:`dpgmm_ppl.covariance.COVARIANCE_STRUCTURES`, it is
fitted, converted to ArviZ, drawn and compared with no change to the package:
the package asks the structure, never its name.
"""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import dpgmm_ppl
from dpgmm_ppl import covariance as cov
from dpgmm_ppl._validation import check_covariance
from dpgmm_ppl.mixtures import covariance_matrices
from dpgmm_ppl.model import COVARIANCE_TYPES, dpgmm
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.sklearn import SUPPORTED_COVARIANCE_TYPES

# -- the "tied" structure ---------------------------------------------------------------


def _tied_sample(priors, event_shape, components):
    dim = event_shape[0]
    scale_prior = dist.InverseGamma(priors.scale_shape, priors.scale_rate)
    scale = numpyro.sample("tied_scale", scale_prior.expand(event_shape).to_event(1))
    corr = numpyro.sample("tied_corr_cholesky", dist.LKJCholesky(dim, priors.lkj_concentration(dim)))
    # The per-component view that the rest of the package reads.
    numpyro.deterministic("scale", jnp.broadcast_to(scale, (components.size, dim)))
    tril = jnp.broadcast_to(scale[:, None] * corr, (components.size, dim, dim))
    return {"scale_tril": numpyro.deterministic("scale_tril", tril)}


def _tied_start(values):
    if "tied_scale" in values:
        return values
    loc = values["loc"]
    xp = np if isinstance(loc, np.ndarray) else jnp
    values = dict(values)
    values["tied_scale"] = xp.exp(xp.mean(xp.log(values["scale"]), axis=-2))
    values["tied_corr_cholesky"] = xp.eye(loc.shape[-1], dtype=loc.dtype)
    return values


def _tied_map_scales(values, unit):
    out = {name: values[name] * unit for name in ("tied_scale", "scale") if name in values}
    if "scale_tril" in values:
        out["scale_tril"] = values["scale_tril"] * unit[..., :, None]
    return out


TIED = dataclasses.replace(
    cov.COVARIANCE_STRUCTURES["full"],
    name="tied",
    sample=_tied_sample,
    starting_values=_tied_start,
    map_scales=_tied_map_scales,
    # One set of sampled scales, not one per component.
    scales_log_unit=lambda unit, num_components: float(np.sum(np.log(unit))),
    compact=lambda matrices: matrices.mean(axis=-3),
    site_dims=lambda event_dims: {
        "tied_scale": ("dim",),
        "tied_corr_cholesky": ("dim", "dim_bis"),
        "scale": ("component", "dim"),
        "scale_tril": ("component", "dim", "dim_bis"),
    },
)

#: The truth: two clusters sharing one correlated covariance.
TRUE_COVARIANCE = np.array([[1.0, 0.7], [0.7, 1.0]])
TRUE_LOCS = np.array([[-4.0, 0.0], [4.0, 2.0]])
POINTS_PER_CLUSTER = 400


@pytest.fixture
def tied(monkeypatch):
    monkeypatch.setitem(cov.COVARIANCE_STRUCTURES, "tied", TIED)
    return TIED


@pytest.fixture(scope="module")
def clusters():
    rng = np.random.default_rng(0)
    factor = np.linalg.cholesky(TRUE_COVARIANCE)
    labels = np.repeat([0, 1], POINTS_PER_CLUSTER)
    x = TRUE_LOCS[labels] + rng.standard_normal((labels.size, 2)) @ factor.T
    return x.astype(np.float32), labels


def _pooled_covariance(x, labels):
    """The within-cluster covariance of the truth's labels: the shared-covariance MLE."""
    centred = x - np.stack([x[labels == k].mean(axis=0) for k in (0, 1)])[labels]
    return centred.T @ centred / len(x)


def _check_recovers_truth(fit, x, labels):
    best = fit.best_chain if fit.backend == "map" else 0
    weights = fit.samples["weights"][best].mean(axis=0)
    heavy = np.argsort(-weights)[:2]
    # Two clusters of equal size: the other components are (nearly) empty.
    np.testing.assert_allclose(weights[heavy], [0.5, 0.5], atol=0.03)
    loc = fit.samples["loc"][best].mean(axis=0)[heavy]
    loc = loc[np.argsort(loc[:, 0])]
    # Standard error of a cluster mean: 1 / sqrt(400) = 0.05 per coordinate.
    np.testing.assert_allclose(loc, TRUE_LOCS, atol=0.2)
    matrices = covariance_matrices(fit.samples)[best].mean(axis=0)
    np.testing.assert_allclose(matrices[heavy[0]], matrices[heavy[1]], rtol=1e-6)
    # The pooled MLE estimates the truth to ~sqrt(2 / 800) = 0.05 per entry; the
    # fit's priors (inverse-gamma scales, LKJ eta = 2.5) move it by a few percent.
    np.testing.assert_allclose(matrices[heavy[0]], _pooled_covariance(x, labels), atol=0.08)
    np.testing.assert_allclose(matrices[heavy[0]], TRUE_COVARIANCE, atol=0.15)


# -- the tied structure end to end ----------------------------------------------------------


def test_tied_structure_is_refused_until_registered(clusters):
    with pytest.raises(ValueError, match=r"covariance must be one of .*got 'tied'"):
        cov.covariance_structure("tied")


@pytest.fixture
def tied_map_fit(tied, clusters):
    x, _ = clusters
    return dpgmm_ppl.fit(x, covariance="tied", backend="map", num_components=3,
                         num_chains=2, num_steps=600, rng_key=0)


def test_tied_map_fit_recovers_the_shared_covariance(tied_map_fit, clusters):
    x, labels = clusters
    fit = tied_map_fit
    assert fit.covariance == "tied"
    assert fit.samples["tied_scale"].shape == (2, 1, 2)
    assert fit.samples["tied_corr_cholesky"].shape == (2, 1, 2, 2)
    _check_recovers_truth(fit, x, labels)
    # The sampled sites and their per-component view agree, in data units.
    best = fit.best_chain
    scale, corr = fit.samples["tied_scale"][best, 0], fit.samples["tied_corr_cholesky"][best, 0]
    np.testing.assert_allclose(fit.samples["scale_tril"][best, 0, 1], scale[:, None] * corr,
                               rtol=1e-5)


def test_relabelling_a_tied_fit_leaves_the_shared_covariance_alone(tied_map_fit):
    """A permutation of the components moves the per-component sites and not
    the shared ones (before, every site with an axis after (chain, draw) was
    permuted along it: the shared scales' ``dim`` axis, of length 2, met a
    permutation of 3 components and raised)."""
    from dpgmm_ppl.labels import apply_permutations

    fit = tied_map_fit
    permutations = np.broadcast_to(np.array([2, 0, 1]), (fit.num_chains, fit.num_draws, 3))
    moved = apply_permutations(fit, permutations)
    for name in ("tied_scale", "tied_corr_cholesky"):
        np.testing.assert_array_equal(moved.samples[name], fit.samples[name])
    for name in ("weights", "loc", "scale", "scale_tril"):
        np.testing.assert_array_equal(moved.samples[name], fit.samples[name][:, :, [2, 0, 1]])


def test_tied_fit_to_arviz_uses_the_structure_dims(tied_map_fit):
    idata = tied_map_fit.to_arviz()
    posterior = idata.posterior
    assert posterior["tied_scale"].dims == ("chain", "draw", "dim")
    assert posterior["tied_corr_cholesky"].dims == ("chain", "draw", "dim", "dim_bis")
    assert posterior["scale_tril"].dims == ("chain", "draw", "component", "dim", "dim_bis")
    np.testing.assert_array_equal(posterior["tied_scale"].values,
                                  tied_map_fit.samples["tied_scale"])
    assert posterior.sizes["component"] == 3 and posterior.sizes["dim_bis"] == 2
    assert posterior.attrs["covariance"] == "tied"


def test_tied_fit_plots_one_shared_ellipse_shape(tied_map_fit):
    import matplotlib.pyplot as plt

    from dpgmm_ppl import plots

    weights, centres, widths, heights, angles = plots.component_ellipses(tied_map_fit)
    heavy = np.argsort(-weights)[:2]
    # One covariance for every component: every ellipse has the same axes and angle.
    np.testing.assert_allclose(widths[heavy[0]], widths[heavy[1]], rtol=1e-5)
    np.testing.assert_allclose(heights[heavy[0]], heights[heavy[1]], rtol=1e-5)
    np.testing.assert_allclose(angles[heavy[0]] % 180, angles[heavy[1]] % 180, atol=1e-3)
    # Correlation 0.7 with unit variances: the major axis lies at 45 degrees (mod 180).
    assert abs(angles[heavy[0]] % 180 - 45.0) < 5.0
    ax = plots.plot_components(tied_map_fit)
    assert len(ax.patches) >= 2
    plt.close("all")


def test_tied_through_compare(tied, clusters):
    assert "covariance" in inspect.signature(dpgmm_ppl.compare).parameters
    x, labels = clusters
    table = dpgmm_ppl.compare(
        x, backends=("map",), covariance="tied", num_components=3, num_chains=2,
        backend_options={"map": {"num_steps": 600}},
    )
    fit = table.fits["map"]
    assert fit.covariance == "tied"
    assert table["components_used"] == [2.0]
    _check_recovers_truth(fit, x, labels)


@pytest.mark.slow
def test_tied_svi_fit_recovers_the_shared_covariance(tied, clusters):
    x, labels = clusters
    fit = dpgmm_ppl.fit(x, covariance="tied", backend="svi", num_components=3,
                        num_chains=1, num_steps=1500, rng_key=0)
    assert fit.covariance == "tied"
    _check_recovers_truth(fit, x, labels)


# -- the built-in structures declare what the package reads ----------------------------------


def test_lists_of_structures_come_from_the_registry():
    assert COVARIANCE_TYPES == tuple(cov.COVARIANCE_STRUCTURES) == ("diag", "spherical", "full")
    assert SUPPORTED_COVARIANCE_TYPES == ("diag", "full", "spherical")
    for name, structure in cov.COVARIANCE_STRUCTURES.items():
        assert structure.name == name
        assert cov.covariance_structure(name) is structure


def test_lookup_names_the_argument_the_value_and_the_known_structures():
    with pytest.raises(ValueError, match=r"^covariance_type must be one of "
                                         r"\('diag', 'spherical', 'full'\), got \['full'\]$"):
        cov.covariance_structure(["full"], argument="covariance_type")


@pytest.mark.parametrize("name", ["diag", "spherical", "full"])
def test_scalar_data_are_fitted_as_diag(name):
    x = np.linspace(-1.0, 1.0, 6)
    assert check_covariance(name, x, None) == "diag"
    assert cov.structure_for(name, 0).name == "diag"
    assert cov.structure_for(name, 1).name == name
    trace = handlers.trace(handlers.seed(dpgmm, 0)).get_trace(x, num_components=3, covariance=name)
    assert trace["scale"]["value"].shape == (3,)
    assert "scale_tril" not in trace and "corr_cholesky" not in trace


@pytest.mark.parametrize("name", ["spherical", "full"])
def test_fixed_scale_is_refused_where_it_fixes_nothing(name):
    x = np.zeros((5, 2))
    message = (rf"^priors.fixed_scale fixes diagonal scales: it needs covariance='diag', "
               rf"got covariance='{name}'$")
    with pytest.raises(ValueError, match=message):
        check_covariance(name, x, Priors(fixed_scale=1.0))
    with pytest.raises(ValueError, match=message):
        handlers.seed(dpgmm, 0)(x, num_components=2, covariance=name,
                                priors=Priors(fixed_scale=1.0))
    assert check_covariance("diag", x, Priors(fixed_scale=1.0)) == "diag"


@pytest.mark.parametrize("name", ["diag", "spherical", "full"])
def test_structure_declares_the_dims_and_spread_of_its_sites(name):
    structure = cov.covariance_structure(name)
    x = np.random.default_rng(1).normal(size=(8, 3))
    trace = handlers.trace(handlers.seed(dpgmm, 0)).get_trace(x, num_components=4, covariance=name)
    own = {site for site, msg in trace.items()
           if msg["type"] in ("sample", "deterministic")
           and site not in ("alpha", "weights", "loc", "obs")}
    dims = structure.site_dims(("dim",))
    assert own <= set(dims)
    sizes = {"component": 4, "dim": 3, "dim_bis": 3}
    for site in own:
        assert trace[site]["value"].shape == tuple(sizes[d] for d in dims[site])
    samples = {site: np.asarray(trace[site]["value"]) for site in own | {"loc", "weights"}}
    # The covariance matrices that the package reads, from the sampled sites.
    scale = np.broadcast_to(samples["scale"].reshape(4, -1), (4, 3)).astype(np.float64)
    corr = samples["corr_cholesky"] if "corr_cholesky" in samples else np.eye(3)
    correlation = corr @ np.swapaxes(corr, -1, -2)
    expected = scale[:, :, None] * correlation * scale[:, None, :]
    np.testing.assert_allclose(covariance_matrices(samples, structure), expected, rtol=1e-5)
    assert cov.structure_of(samples).component_spread(samples).shape == \
        structure.component_spread(samples).shape
    # A diagonal start is given the structure's sites, which the model accepts.
    start = structure.starting_values({"loc": np.zeros((4, 3)), "scale": np.full((4, 3), 2.0)})
    sampled = {s for s in own if trace[s]["type"] == "sample"}
    assert sampled <= set(start)
    for site in sampled:
        assert np.shape(start[site]) == trace[site]["value"].shape


@pytest.mark.parametrize("name", ["diag", "spherical", "full"])
def test_spread_parameters_count_the_unconstrained_coordinates(name):
    from dpgmm_ppl.density import build_log_density
    from dpgmm_ppl.infer._map_program import parameters_per_component

    x = np.random.default_rng(2).normal(size=(30, 4))
    density = build_log_density(x, num_components=5, covariance=name)
    spread = sum(np.size(value) for site, value in density.init_position.items()
                 if site not in ("alpha", "weights", "loc"))
    structure = cov.covariance_structure(name)
    assert structure.spread_parameters(4) * 5 == spread
    # A weight, a location and the spread per component.
    assert parameters_per_component(density) == 1 + 4 + spread // 5


def test_reordering_components_leaves_a_shared_site_alone(tied):
    """With D == K a shared site has a first axis of size K; it is not a component axis."""
    import optax

    from dpgmm_ppl.density import build_log_density
    from dpgmm_ppl.infer._map_program import component_sites, weight_order_step

    x = np.random.default_rng(3).normal(size=(40, 3))
    density = build_log_density(x, num_components=3, covariance="tied")
    assert component_sites(density) == {"weights", "loc", "scale", "scale_tril"}
    corr = np.linalg.cholesky(np.array([[1.0, 0.5, 0.2], [0.5, 1.0, -0.3], [0.2, -0.3, 1.0]]))
    values = {
        "alpha": np.float32(1.0),
        "weights": np.array([0.2, 0.5, 0.3], np.float32),
        "loc": np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]], np.float32),
        "tied_scale": np.array([0.5, 1.0, 2.0], np.float32),
        "tied_corr_cholesky": corr.astype(np.float32),
    }
    position = density.standard_unconstrain_fn(values)

    # A loss that only asks for the weights in decreasing order.
    def loss_fn(position, data):
        weights = density.standard_constrain_fn(position)["weights"]
        return jnp.sum(jnp.arange(3) * weights)

    optimizer = optax.sgd(0.1)
    # Jitted, as inside MAP's program.
    reorder = jax.jit(weight_order_step(density, optimizer, loss_fn))
    reordered, _ = reorder(position, optimizer.init(position), density.data)
    after = density.standard_constrain_fn(reordered)
    order = [1, 2, 0]
    np.testing.assert_allclose(after["weights"], values["weights"][order], rtol=1e-5)
    np.testing.assert_allclose(after["loc"], values["loc"][order], rtol=1e-5)
    np.testing.assert_allclose(after["tied_scale"], values["tied_scale"], rtol=1e-5)
    np.testing.assert_allclose(after["tied_corr_cholesky"], values["tied_corr_cholesky"],
                               atol=1e-5)
