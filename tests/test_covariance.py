"""Covariance structures: ``"diag"``, ``"spherical"`` and ``"full"``.

The full-covariance likelihood against scipy, the model's log joint against
an independent implementation (scipy's Beta for the LKJ density of a 2x2
correlation), the bound that the default LKJ concentration puts on a
component flattening onto two points, recovery of known covariances by
MAP and SVI, and the downstream pieces (ArviZ, save/load, relabelling,
ellipses) on fits with each structure.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import log_density
from scipy import stats

import dpgmm_ppl
from dpgmm_ppl import GaussianMixture, Priors, dpgmm
from dpgmm_ppl.labels import apply_permutations, relabel
from dpgmm_ppl.mixtures import component_parameters, covariance_matrices
from dpgmm_ppl.plots import component_ellipses

TRUE_LOC = np.array([[0.0, 0.0], [6.0, 1.0]])
TRUE_COV = np.array([[[1.0, 0.8], [0.8, 1.0]], [[2.0, -1.2], [-1.2, 1.0]]])
TRUE_WEIGHTS = np.array([0.6, 0.4])


def _correlated_clusters(rng, num_points):
    counts = (TRUE_WEIGHTS * num_points).astype(int)
    parts = [rng.multivariate_normal(m, c, n) for m, c, n in zip(TRUE_LOC, TRUE_COV, counts)]
    return np.concatenate(parts).astype(np.float32)


def _random_cholesky(rng, num_components, dim):
    factors = rng.normal(size=(num_components, dim, dim))
    covariances = factors @ np.swapaxes(factors, -1, -2) + 0.3 * np.eye(dim)
    return np.linalg.cholesky(covariances), covariances


# -- the likelihood ------------------------------------------------------------


@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_full_mixture_log_prob_matches_scipy(rng, offset):
    dim, num_components = 3, 4
    tril, covariances = _random_cholesky(rng, num_components, dim)
    loc = offset + 3.0 * rng.normal(size=(num_components, dim))
    weights = rng.dirichlet(np.ones(num_components))
    x = offset + 3.0 * rng.normal(size=(200, dim))
    expected = np.log(sum(
        w * stats.multivariate_normal(m, c).pdf(x) for w, m, c in zip(weights, loc, covariances)
    ))
    mixture = GaussianMixture(
        jnp.asarray(weights, jnp.float32), jnp.asarray(loc, jnp.float32),
        scale_tril=jnp.asarray(tril, jnp.float32), center=offset, unit=3.0,
    )
    actual = np.asarray(mixture.log_prob(jnp.asarray(x, jnp.float32)))
    # float32: the data's rounding at the offset (1e3 * 6e-8) times the gradient
    # of the log density (|x - mu| / var, up to ~30), plus the expanded square's
    # own rounding; 2e-3 covers it.
    np.testing.assert_allclose(actual, expected, atol=2e-3 if offset else 2e-5, rtol=1e-5)


def test_full_mixture_gradient_matches_the_direct_form(rng):
    tril, _ = _random_cholesky(rng, 3, 2)
    loc, weights = rng.normal(size=(3, 2)), rng.dirichlet(np.ones(3))
    x = jnp.asarray(rng.normal(size=(100, 2)) * 2)

    def ours(tril, loc):
        return GaussianMixture(weights, loc, scale_tril=tril).log_prob(x).sum()

    def direct(tril, loc):
        def component(k):
            z = jax.scipy.linalg.solve_triangular(tril[k], (x - loc[k]).T, lower=True)
            log_det = jnp.sum(jnp.log(jnp.diag(tril[k])))
            return math.log(weights[k]) - 0.5 * jnp.sum(z * z, 0) - log_det - math.log(2 * math.pi)

        return jax.scipy.special.logsumexp(jnp.stack([component(k) for k in range(3)]), 0).sum()

    args = (jnp.asarray(tril, jnp.float32), jnp.asarray(loc, jnp.float32))
    gradients = [jax.jit(jax.grad(f, (0, 1)))(*args) for f in (ours, direct)]
    for got, want in zip(*gradients):
        np.testing.assert_allclose(np.tril(got) if got.ndim == 3 else got,
                                   np.tril(want) if want.ndim == 3 else want, rtol=2e-4, atol=2e-4)


def test_full_mixture_samples_have_the_mixture_moments():
    tril = np.linalg.cholesky(TRUE_COV)
    mixture = GaussianMixture(TRUE_WEIGHTS, TRUE_LOC, scale_tril=tril)
    draws = np.asarray(mixture.sample(jax.random.PRNGKey(3), (40_000,)), np.float64)
    mean = TRUE_WEIGHTS @ TRUE_LOC
    centred = TRUE_LOC - mean
    covariance = np.einsum("k,kij->ij", TRUE_WEIGHTS, TRUE_COV + centred[:, :, None] * centred[:, None])
    standard_error = np.sqrt(np.diag(covariance) / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * standard_error)
    # Standard error of a sample covariance entry: sqrt((s_ii s_jj + s_ij^2) / n).
    cov_error = np.sqrt((np.outer(np.diag(covariance), np.diag(covariance)) + covariance**2) / draws.shape[0])
    assert np.all(np.abs(np.cov(draws.T) - covariance) < 5 * cov_error)


def test_spherical_equals_diagonal_with_equal_scales(rng):
    x = rng.normal(size=(300, 3)).astype(np.float32)
    values = {
        "alpha": np.float32(0.7),
        "weights": np.array([0.5, 0.3, 0.2], np.float32),
        "loc": rng.normal(size=(3, 3)).astype(np.float32),
    }
    scale = np.array([0.5, 1.0, 2.0], np.float32)
    priors = Priors(scale_rate=0.4).resolve(x)  # one rate for every dimension
    spherical, _ = log_density(dpgmm, (x,), {"num_components": 3, "priors": priors,
                                             "covariance": "spherical"}, {**values, "scale": scale})
    diagonal, _ = log_density(dpgmm, (x,), {"num_components": 3, "priors": priors},
                              {**values, "scale": np.repeat(scale[:, None], 3, 1)})
    # The same likelihood; the priors differ by the two missing scales per component.
    missing = 2 * np.sum(stats.invgamma(priors.scale_shape, scale=0.4).logpdf(scale))
    np.testing.assert_allclose(float(diagonal) - float(spherical), missing, rtol=2e-5, atol=1e-3)


# -- the model -----------------------------------------------------------------


def _scipy_log_joint(x, values, priors, eta):
    """The full-covariance log joint for 2-d data, written with scipy only."""
    alpha, weights, loc, scale, rho = (values[k] for k in ("alpha", "weights", "loc", "scale", "rho"))
    sticks = weights[:-1] / np.cumsum(weights[::-1])[::-1][:-1]
    remaining = np.cumsum(weights[::-1])[::-1][:-1]
    total = stats.gamma(priors.alpha_shape, scale=1 / priors.alpha_rate).logpdf(alpha)
    # Beta(1, alpha) sticks and the Jacobian of weights -> sticks.
    total += np.sum(stats.beta(1, alpha).logpdf(sticks)) - np.sum(np.log(remaining))
    total += np.sum(stats.norm(priors.loc_mean, priors.loc_scale).logpdf(loc))
    total += np.sum(stats.invgamma(priors.scale_shape, scale=priors.scale_rate).logpdf(scale))
    # LKJ for D = 2: (rho + 1) / 2 ~ Beta(eta, eta); the Cholesky factor's free entry is rho.
    total += np.sum(stats.beta(eta, eta).logpdf((rho + 1) / 2) - np.log(2))
    density = 0.0
    for k in range(len(weights)):
        covariance = np.outer(scale[k], scale[k]) * np.array([[1, rho[k]], [rho[k], 1]])
        density = density + weights[k] * stats.multivariate_normal(loc[k], covariance).pdf(x)
    return total + np.sum(np.log(density))


@pytest.mark.parametrize("eta", [None, 1.0, 4.0])
def test_full_model_log_joint_matches_scipy(rng, eta):
    x = _correlated_clusters(rng, 200).astype(np.float64)
    priors = Priors(corr_concentration=eta).resolve(x)
    rho = np.array([0.5, -0.7, 0.1])
    values = {
        "alpha": 0.8, "weights": np.array([0.5, 0.3, 0.2]), "rho": rho,
        "loc": rng.normal(size=(3, 2)), "scale": rng.uniform(0.5, 2.0, size=(3, 2)),
    }
    corr_cholesky = np.zeros((3, 2, 2))
    corr_cholesky[:, 0, 0], corr_cholesky[:, 1, 0], corr_cholesky[:, 1, 1] = 1, rho, np.sqrt(1 - rho**2)
    sites = {k: v for k, v in values.items() if k != "rho"}
    kwargs = {"num_components": 3, "priors": priors, "covariance": "full"}
    with jax.enable_x64(True):
        actual = jax.jit(lambda values: log_density(dpgmm, (x,), kwargs, values)[0])(
            {**sites, "corr_cholesky": corr_cholesky}
        )
    expected = _scipy_log_joint(x, values, priors, priors.lkj_concentration(2))
    np.testing.assert_allclose(float(actual), expected, rtol=1e-6)


def _log_joint_flattening(eta, rhos):
    """Log joint of a 2-component fit whose second component sits on two points,
    its correlation ``rho`` aligned with the line through them, for each of ``rhos``."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(50, 2)), [[4.0, 4.0], [5.0, 5.0]]])
    priors = Priors(corr_concentration=eta).resolve(x)
    kwargs = {"num_components": 2, "priors": priors, "covariance": "full"}
    values = {
        "alpha": 1.0, "weights": np.array([0.96, 0.04]),
        "loc": np.array([[0.0, 0.0], [4.5, 4.5]]), "scale": np.array([[1.0, 1.0], [0.5, 0.5]]),
    }

    def log_joint(rho):
        flattened = jnp.array([[1.0, 0.0], [rho, jnp.sqrt(1 - rho**2)]])
        corr_cholesky = jnp.stack([jnp.eye(2), flattened])
        return log_density(dpgmm, (x,), kwargs, {**values, "corr_cholesky": corr_cholesky})[0]

    with jax.enable_x64(True):
        return np.asarray(jax.jit(jax.vmap(log_joint))(jnp.asarray(rhos)))


def test_default_lkj_prior_bounds_a_component_flattening_onto_two_points():
    rhos = 1.0 - np.logspace(-2, -10, 5)
    uniform = _log_joint_flattening(1.0, rhos)
    default = _log_joint_flattening(None, rhos)
    # Flat correlations (eta = 1): the log joint grows without bound, like
    # -log(1 - rho^2), about 2.3 nats more per decade.
    assert np.all(np.diff(uniform) > 2.0)
    # The default eta = (D + 3) / 2 = 2.5: it falls, like +0.5 log(1 - rho^2).
    assert np.all(np.diff(default) < -1.0)


# -- fits with each structure ------------------------------------------------------
# Slow (a compiled fit each): CI's first leg runs them, the 3.12+ leg does not.


@pytest.fixture(scope="module")
def clusters():
    return _correlated_clusters(np.random.default_rng(11), 1500)


@pytest.fixture(scope="module")
def map_fits(clusters):
    return {
        covariance: dpgmm_ppl.fit(clusters, num_components=4, covariance=covariance,
                                  num_steps=1500, rng_key=1)
        for covariance in ("diag", "spherical", "full")
    }


def _merged_clusters(fit, chain=None):
    """Weight, mean and covariance per true cluster, per draw, moment-matched over
    the fitted components nearest it (MAP and SVI keep small extra components
    on a cluster's tail points; merged, they describe the cluster)."""
    chain = fit.best_chain if chain is None else chain
    samples = {name: np.asarray(value[chain], np.float64) for name, value in fit.samples.items()}
    weights, loc = samples["weights"], samples["loc"]  # (draw, K), (draw, K, D)
    covariances = covariance_matrices(samples)
    precisions = np.linalg.inv(TRUE_COV)
    offsets = loc[:, :, None, :] - TRUE_LOC  # (draw, K, cluster, D)
    nearest = np.argmin(np.einsum("skcd,cde,skce->skc", offsets, precisions, offsets), axis=-1)
    merged = []
    for cluster in range(len(TRUE_LOC)):
        w = np.where(nearest == cluster, weights, 0.0)
        total = w.sum(-1)
        mean = np.einsum("sk,skd->sd", w, loc) / total[:, None]
        second = covariances + loc[..., :, None] * loc[..., None, :]
        cov = np.einsum("sk,skij->sij", w, second) / total[:, None, None]
        merged.append((total, mean, cov - mean[:, :, None] * mean[:, None, :]))
    return merged


@pytest.mark.slow
def test_map_full_recovers_the_true_covariances(map_fits, clusters):
    merged = _merged_clusters(map_fits["full"])
    counts = TRUE_WEIGHTS * clusters.shape[0]
    for k, (weight, mean, covariance) in enumerate(merged):
        variances = np.diag(TRUE_COV[k])
        # Sample-covariance standard errors, plus the shrinkage of the priors (<1%).
        error = np.sqrt((np.outer(variances, variances) + TRUE_COV[k] ** 2) / counts[k])
        assert np.all(np.abs(covariance[0] - TRUE_COV[k]) < 4 * error + 0.01 * np.abs(TRUE_COV[k]))
        assert np.all(np.abs(mean[0] - TRUE_LOC[k]) < 4 * np.sqrt(variances / counts[k]))
        binomial = np.sqrt(TRUE_WEIGHTS[k] * (1 - TRUE_WEIGHTS[k]) / clusters.shape[0])
        assert abs(weight[0] - TRUE_WEIGHTS[k]) < 4 * binomial + 0.01


@pytest.mark.slow
def test_full_covariance_fits_correlated_data_better(map_fits):
    heldout = _correlated_clusters(np.random.default_rng(12), 4000)
    scores = {name: fit.log_predictive_density(heldout).mean() for name, fit in map_fits.items()}
    truth = np.log(sum(w * stats.multivariate_normal(m, c).pdf(heldout)
                       for w, m, c in zip(TRUE_WEIGHTS, TRUE_LOC, TRUE_COV))).mean()
    # Standard error of a held-out mean log density: about sd / sqrt(n) ~ 0.02.
    assert abs(scores["full"] - truth) < 0.03
    # Diagonal and spherical components need several per correlated cluster
    # (four at most here) and lose density.
    assert scores["full"] > scores["diag"] + 0.1
    assert scores["full"] > scores["spherical"] + 0.1


@pytest.mark.slow
def test_fit_sites_and_covariance_matrices_agree(map_fits):
    full = map_fits["full"]
    tril = full.samples["scale_tril"]
    assert full.covariance == "full" and tril.shape == (1, 1, 4, 2, 2)
    np.testing.assert_allclose(
        tril, full.samples["scale"][..., None] * full.samples["corr_cholesky"], rtol=1e-6
    )
    np.testing.assert_allclose(
        np.sqrt(np.diagonal(covariance_matrices(full.samples), axis1=-2, axis2=-1)),
        full.samples["scale"], rtol=1e-5,
    )
    spherical = map_fits["spherical"]
    assert spherical.samples["scale"].shape == (1, 1, 4)
    _, _, spread = component_parameters(spherical.samples)
    np.testing.assert_array_equal(spread[..., 0], spread[..., 1])


@pytest.mark.slow
def test_svi_full_recovers_the_correlations(clusters):
    fit = dpgmm_ppl.fit(clusters, backend="svi", num_components=4, covariance="full",
                        num_steps=1500, num_samples=200, rng_key=2)
    counts = TRUE_WEIGHTS * clusters.shape[0]
    for k, (_, _, covariance) in enumerate(_merged_clusters(fit, chain=0)):
        correlation = covariance[:, 0, 1] / np.sqrt(covariance[:, 0, 0] * covariance[:, 1, 1])
        true_correlation = TRUE_COV[k, 0, 1] / np.sqrt(TRUE_COV[k, 0, 0] * TRUE_COV[k, 1, 1])
        # The posterior sd of a correlation from n points is about (1 - rho^2) / sqrt(n).
        error = (1 - true_correlation**2) / np.sqrt(counts[k])
        assert abs(correlation.mean() - true_correlation) < 4 * error + 0.01


# -- downstream: ArviZ, files, labels, ellipses -----------------------------------


@pytest.mark.slow
def test_arviz_dims_and_save_load_round_trip(map_fits, tmp_path):
    from dpgmm_ppl._arviz_compat import is_datatree

    for covariance, fit in map_fits.items():
        data = fit.to_arviz()
        posterior = data["posterior"] if is_datatree() else data.posterior
        assert set(posterior.data_vars) == set(fit.samples)
        if covariance == "full":
            assert posterior["scale_tril"].dims == ("chain", "draw", "component", "dim", "dim_bis")
        if covariance == "spherical":
            assert posterior["scale"].dims == ("chain", "draw", "component")
        loaded = dpgmm_ppl.load(fit.save(tmp_path / f"{covariance}.nc"))
        assert loaded.covariance == covariance
        for name, value in fit.samples.items():
            np.testing.assert_array_equal(loaded.samples[name], value)
        for name, value in fit.history.items():
            np.testing.assert_array_equal(loaded.history[name], value)


@pytest.mark.slow
def test_permuted_full_fit_relabels_back(map_fits, clusters):
    fit = map_fits["full"]
    permutation = np.array([[[2, 0, 3, 1]]])
    permuted = apply_permutations(fit, permutation)
    np.testing.assert_array_equal(permuted.samples["scale_tril"][0, 0], fit.samples["scale_tril"][0, 0, [2, 0, 3, 1]])
    # The same mixture: equal up to float32 rounding of a sum in another order.
    np.testing.assert_allclose(permuted.log_predictive_density(clusters[:500]),
                               fit.log_predictive_density(clusters[:500]), rtol=1e-5)
    # One draw, relabelled against the original as pivot: the original order comes back.
    restored = relabel(permuted, pivot=fit)
    for name in ("weights", "loc", "scale_tril", "corr_cholesky"):
        np.testing.assert_array_equal(restored.samples[name], fit.samples[name])


@pytest.mark.slow
def test_ellipses_follow_the_covariance_matrices(map_fits):
    fit = map_fits["full"]
    weights, centres, widths, heights, angles = component_ellipses(fit, num_std=1.0)
    covariances = covariance_matrices(fit.samples)[0, 0]
    for k in range(fit.num_components):
        major = np.array([math.cos(math.radians(angles[k])), math.sin(math.radians(angles[k]))])
        # The width axis is an eigenvector with eigenvalue (width / 2)^2, the height the other.
        np.testing.assert_allclose(covariances[k] @ major, (widths[k] / 2) ** 2 * major, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(np.linalg.det(covariances[k]), (widths[k] * heights[k] / 4) ** 2, rtol=1e-4)
    np.testing.assert_allclose(centres, fit.samples["loc"][0, 0])


def test_bad_covariance_is_refused_before_tracing():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"^covariance must be one of \('diag', 'spherical', 'full'\), got 'tied'$"):
        dpgmm_ppl.fit(x, covariance="tied")
    with pytest.raises(ValueError, match=r"fixed_scale .* covariance='diag'"):
        dpgmm_ppl.fit(x, covariance="full", priors=Priors(fixed_scale=1.0))
    with pytest.raises(ValueError, match=r"corr_concentration must be positive"):
        Priors(corr_concentration=-1.0)


@pytest.mark.slow
def test_scalar_data_fit_every_structure_as_diagonal():
    x = np.r_[np.linspace(-6, -4, 40), np.linspace(4, 6, 40)]
    fits = [dpgmm_ppl.fit(x, num_components=3, num_steps=200, covariance=c) for c in ("full", "diag")]
    assert fits[0].covariance == "diag"
    np.testing.assert_array_equal(fits[0].samples["loc"], fits[1].samples["loc"])


@pytest.mark.slow
def test_nuts_full_single_component_posterior_of_the_correlation():
    """One component, 400 points: the posterior of the correlation is close to
    normal around the sample correlation, with sd (1 - r^2) / sqrt(n)."""
    rng = np.random.default_rng(5)
    covariance = np.array([[1.0, 0.6], [0.6, 2.0]])
    x = rng.multivariate_normal([1.0, -1.0], covariance, 400).astype(np.float32)
    fit = dpgmm_ppl.fit(x, backend="nuts", num_components=1, covariance="full",
                        num_warmup=200, num_samples=300, num_chains=1, rng_key=3)
    assert fit.sample_stats["diverging"].sum() == 0
    correlation = fit.samples["corr_cholesky"][0, :, 0, 1, 0]  # L[1, 0] of a 2x2 factor is rho
    sample = np.corrcoef(x.T)[0, 1]
    sd = (1 - sample**2) / np.sqrt(len(x))
    from numpyro.diagnostics import effective_sample_size

    ess = float(effective_sample_size(correlation[None].astype(np.float64)))
    # Monte-Carlo error sd / sqrt(ESS), and the LKJ prior's pull of about
    # (eta - 1) r / n = 1.5 * 0.42 / 400 = 0.002.
    assert abs(correlation.mean() - sample) < 4 * sd / np.sqrt(ess) + 0.004
    assert 0.7 * sd < correlation.std() < 1.3 * sd
    # The same chain through the label tools and plots of vector data.
    from dpgmm_ppl import plots

    assert len(plots.plot_components(fit).patches) == 1
    report = dpgmm_ppl.labels.label_switching_report(fit)
    assert not report.is_switching
