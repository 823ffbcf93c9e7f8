"""``dpgmm_ppl.sklearn.DirichletProcessGMM``: scikit-learn's estimator checks,
clusters with known parameters, Pipeline, GridSearchCV, clone, sample."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("sklearn")

# Slow: dozens of small fits, each compiled; CI runs them on its first leg.
pytestmark = pytest.mark.slow

import jax  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402

from dpgmm_ppl import Priors  # noqa: E402
from dpgmm_ppl.sklearn import DirichletProcessGMM  # noqa: E402

# The estimator checks fit the same small data sets again and again; the
# session's persistent compilation cache (tests/conftest.py) turns each
# recompilation into a file read (176 s without it, 84 s with it, measured
# on 2 busy CPU cores).


# -- scikit-learn's own checks ------------------------------------------------


# Every check passes: no expected failures to declare (expected_failed_checks).
@parametrize_with_checks(
    [DirichletProcessGMM(n_components=3, backend_options={"num_steps": 200})]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# -- four well-separated clusters in 5-D, diagonal covariances ---------------

NUM_POINTS = 3000
TRUE_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
TRUE_MEANS = np.array(
    [
        [6.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 6.0, 0.0, 0.0, -3.0],
        [-6.0, 0.0, 3.0, 0.0, 0.0],
        [0.0, -6.0, 0.0, 4.0, 3.0],
    ]
)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(20261124)
    sds = rng.uniform(0.5, 1.5, size=TRUE_MEANS.shape)
    labels = rng.choice(len(TRUE_WEIGHTS), size=NUM_POINTS, p=TRUE_WEIGHTS)
    noise = rng.standard_normal((NUM_POINTS, TRUE_MEANS.shape[1]))
    X = TRUE_MEANS[labels] + noise * sds[labels]
    return X, labels, sds


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _, _ = blobs
    # MAP can park a few tail points of a cluster in a small extra component
    # (a genuine local mode, a few nats below the best); three restarts and
    # the best of them (fit_.best_chain) keep that rare.
    return DirichletProcessGMM(n_components=6, n_chains=3, max_iter=3000, random_state=0).fit(X)


def _match(model):
    """Fitted component matched to each true one, by the distance between means."""
    cost = np.linalg.norm(TRUE_MEANS[:, None, :] - model.means_[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def test_fitted_attributes(fitted, blobs):
    X, _, _ = blobs
    result = fitted.fit_
    assert fitted.weights_.shape == (6,)
    assert fitted.means_.shape == fitted.covariances_.shape == (6, 5)
    assert fitted.n_features_in_ == 5
    assert fitted.n_iter_ == 3000 == result.losses.shape[1]
    assert fitted.converged_ is True
    best = result.best_chain
    # MAP's objective at its last step, per point (within the change of one step).
    np.testing.assert_allclose(
        fitted.lower_bound_, result.sample_stats["objective"][best, 0] / len(X), rtol=1e-5
    )
    np.testing.assert_allclose(fitted.means_, result.samples["loc"][best, 0], rtol=1e-6)
    np.testing.assert_allclose(
        fitted.covariances_, result.samples["scale"][best, 0] ** 2, rtol=1e-5
    )
    np.testing.assert_allclose(fitted.weights_.sum(), 1.0, rtol=1e-12)
    proba = fitted.predict_proba(X[:50])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(fitted.predict(X[:50]), np.argmax(proba, axis=1))
    np.testing.assert_allclose(
        fitted.score(X[:50]), np.mean(result.log_predictive_density(X[:50])), rtol=1e-6
    )


def test_predict_recovers_the_clusters(fitted, blobs):
    X, labels, _ = blobs
    assert adjusted_rand_score(labels, fitted.predict(X)) >= 0.95


def test_weights_and_means_match_the_truth(fitted, blobs):
    X, _, sds = blobs
    match = _match(fitted)
    extra = np.delete(fitted.weights_, match).sum()
    # The weight the fit gives to components that match no cluster comes out
    # of some cluster's share; it must stay small.
    assert extra <= 0.05
    # A cluster's share of the points is Binomial(N, w) / N: within three
    # standard errors of w, and the fitted weight within that plus the extra mass.
    weight_se = np.sqrt(TRUE_WEIGHTS * (1 - TRUE_WEIGHTS) / NUM_POINTS)
    assert np.all(np.abs(fitted.weights_[match] - TRUE_WEIGHTS) <= 3 * weight_se + extra)
    # A cluster's sample mean has standard error sd / sqrt(n_k) per feature;
    # four of them bound all 20 coordinates together (chance of a miss ~1e-3).
    # The priors (location prior twice the data's spread wide) shift them far less.
    mean_se = sds / np.sqrt(TRUE_WEIGHTS * NUM_POINTS)[:, None]
    assert np.all(np.abs(fitted.means_[match] - TRUE_MEANS) <= 4 * mean_se)
    # The same for the variances: a sample variance has relative standard
    # error sqrt(2 / (n_k - 1)); the inverse-gamma prior on the scales pulls
    # a MAP variance by about 3 / n_k relative, well inside that.
    var_se = sds**2 * np.sqrt(2 / (TRUE_WEIGHTS * NUM_POINTS - 1))[:, None]
    assert np.all(np.abs(fitted.covariances_[match] - sds**2) <= 4 * var_se)


def test_sample_matches_the_fitted_mixture(fitted):
    num = 20_000
    points, components = fitted.sample(num)
    assert points.shape == (num, 5) and components.shape == (num,)
    counts = np.bincount(components, minlength=6)
    # Component frequencies: four binomial standard errors.
    weight_se = np.sqrt(fitted.weights_ * (1 - fitted.weights_) / num)
    assert np.all(np.abs(counts / num - fitted.weights_) <= 4 * weight_se + 1e-12)
    # Per-component means: four Monte-Carlo standard errors, sqrt(var / n_k).
    for k in np.flatnonzero(counts >= 30):
        mean = points[components == k].mean(axis=0)
        se = np.sqrt(fitted.covariances_[k] / counts[k])
        assert np.all(np.abs(mean - fitted.means_[k]) <= 4 * se), k
    # random_state fixes the draws, as for GaussianMixture.
    again, again_components = fitted.sample(num)
    np.testing.assert_array_equal(points, again)
    np.testing.assert_array_equal(components, again_components)


# -- four well-separated clusters in 5-D, full covariances --------------------


@pytest.fixture(scope="module")
def correlated_blobs():
    rng = np.random.default_rng(7)
    factors = rng.normal(size=(4, 5, 5)) * 0.5
    covariances = factors @ np.swapaxes(factors, 1, 2) + 0.2 * np.eye(5)
    labels = rng.choice(len(TRUE_WEIGHTS), size=NUM_POINTS, p=TRUE_WEIGHTS)
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(covariances)[labels],
                      rng.standard_normal((NUM_POINTS, 5)))
    return TRUE_MEANS[labels] + noise, labels, covariances


@pytest.fixture(scope="module")
def fitted_full(correlated_blobs):
    X, _, _ = correlated_blobs
    return DirichletProcessGMM(
        n_components=6, covariance_type="full", n_chains=2, max_iter=2000, random_state=0
    ).fit(X)


def test_full_covariance_predict_recovers_the_clusters(fitted_full, correlated_blobs):
    X, labels, _ = correlated_blobs
    assert adjusted_rand_score(labels, fitted_full.predict(X)) >= 0.95


def test_full_covariances_match_the_truth(fitted_full, correlated_blobs):
    X, labels, covariances = correlated_blobs
    assert fitted_full.covariances_.shape == (6, 5, 5)
    match = _match(fitted_full)
    counts = np.bincount(labels, minlength=4)
    for k, fitted_k in enumerate(match):
        # Standard error of a sample covariance entry: sqrt((s_ii s_jj + s_ij^2) / n_k).
        variances = np.diag(covariances[k])
        se = np.sqrt((np.outer(variances, variances) + covariances[k] ** 2) / counts[k])
        # Five of them over 15 distinct entries a cluster; the weaker extra
        # components and the priors move a MAP estimate less than one.
        assert np.all(np.abs(fitted_full.covariances_[fitted_k] - covariances[k]) <= 5 * se), k
    # sample() draws with these covariances: the sample covariance of the
    # heaviest component within five standard errors.
    points, components = fitted_full.sample(20_000)
    heavy = match[0]
    drawn = points[components == heavy]
    cov = fitted_full.covariances_[heavy]
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / len(drawn))
    assert np.all(np.abs(np.cov(drawn.T) - cov) <= 5 * se)


def test_spherical_covariances_have_one_variance_per_component(blobs):
    X, labels, sds = blobs
    model = DirichletProcessGMM(
        n_components=4, covariance_type="spherical", max_iter=1500, random_state=0
    ).fit(X)
    assert model.covariances_.shape == (4,)
    scale = model.fit_.samples["scale"][model.fit_.best_chain, 0]
    np.testing.assert_allclose(model.covariances_, scale**2, rtol=1e-5)
    assert adjusted_rand_score(labels, model.predict(X)) >= 0.95


def test_pipeline_with_standard_scaler(blobs):
    X, labels, _ = blobs
    model = DirichletProcessGMM(n_components=6, n_chains=3, max_iter=3000, random_state=0)
    pipeline = Pipeline([("scale", StandardScaler()), ("dpgmm", model)]).fit(X)
    assert adjusted_rand_score(labels, pipeline.predict(X)) >= 0.95
    scaled = pipeline.named_steps["scale"].transform(X[:100])
    np.testing.assert_allclose(
        pipeline.score(X[:100]), pipeline.named_steps["dpgmm"].score(scaled), rtol=1e-12
    )
    assert pipeline.predict_proba(X[:10]).shape == (10, 6)


def test_grid_search_picks_enough_components(blobs):
    X, _, _ = blobs
    search = GridSearchCV(
        DirichletProcessGMM(max_iter=1000, random_state=0),
        {"n_components": [1, 5]},
        cv=2,
    ).fit(X[:800])
    assert search.best_params_ == {"n_components": 5}
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and scores[1] > scores[0] + 1.0
    check_is_fitted(search.best_estimator_)
    assert search.best_estimator_.weights_.shape == (5,)


def test_clone_gives_an_unfitted_copy_with_the_same_params(fitted):
    estimator = DirichletProcessGMM(
        n_components=4,
        backend="svi",
        n_chains=2,
        max_iter=50,
        random_state=3,
        priors=Priors(alpha_shape=2.0),
        backend_options={"num_samples": 10},
    )
    copy = clone(estimator)
    params, copied = estimator.get_params(), copy.get_params()
    assert params.keys() == copied.keys()
    for name, value in params.items():
        if name == "priors":
            assert dataclasses.asdict(copied[name]) == dataclasses.asdict(value)
        else:
            assert copied[name] == value, name
    refit = clone(fitted)
    assert refit.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        check_is_fitted(refit)
    with pytest.raises(NotFittedError):
        refit.predict(np.zeros((2, 5)))


def test_same_random_state_gives_identical_fits():
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(-4, 1, (60, 2)), rng.normal(4, 1, (60, 2))])

    def attributes(random_state):
        model = DirichletProcessGMM(n_components=3, max_iter=300, random_state=random_state)
        model.fit(X)
        return [model.weights_, model.means_, model.covariances_, model.lower_bound_,
                model.converged_, model.predict_proba(X)]

    first, second = attributes(7), attributes(7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    # A RandomState seeds the fit by a draw from it; equal states give equal fits.
    for a, b in zip(attributes(np.random.RandomState(7)), attributes(np.random.RandomState(7))):
        np.testing.assert_array_equal(a, b)
    # An int seed is dpgmm_ppl.fit's rng_key as it is.
    model = DirichletProcessGMM(n_components=3, max_iter=300, random_state=7).fit(X)
    np.testing.assert_array_equal(model.fit_.rng_key, np.asarray(jax.random.PRNGKey(7)))


def test_svi_and_nuts_on_one_feature():
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(-4, 1, 50), rng.normal(4, 1, 50)])[:, None]
    model = DirichletProcessGMM(
        n_components=3, backend="svi", max_iter=400, random_state=0,
        backend_options={"num_samples": 20},
    ).fit(X)
    assert model.means_.shape == model.covariances_.shape == (3, 1)
    assert model.n_iter_ == 400 == model.fit_.losses.shape[1]
    best = model.fit_.best_chain
    result = model.fit_
    np.testing.assert_allclose(model.lower_bound_, -result.losses[best, -1] / len(X), rtol=1e-6)
    np.testing.assert_allclose(model.means_, result.samples["loc"][best].mean(axis=0), rtol=1e-6)
    assert isinstance(model.converged_, bool)
    labels = model.predict(X)  # no component spans both groups
    assert not set(labels[:50].tolist()) & set(labels[50:].tolist())
    points, _ = model.sample(7)
    assert points.shape == (7, 1)

    model.set_params(
        backend="nuts", max_iter=None,
        backend_options={"num_warmup": 30, "num_samples": 30, "num_init_steps": 50},
    ).fit(X)
    assert not hasattr(model, "lower_bound_")  # no bound for NUTS; the SVI one is gone
    assert model.n_iter_ == 60
    assert model.converged_ == (not model.fit_.sample_stats["diverging"].any())
    assert model.weights_.shape == (3,) and np.isfinite(model.score(X))


@pytest.mark.parametrize(
    "params, error, match",
    [
        ({"covariance_type": "tied"}, ValueError,
         r"covariance_type must be one of \['diag', 'full', 'spherical'\], got 'tied'"),
        ({"covariance_type": "full", "backend_options": {"covariance": "diag"}}, ValueError,
         "covariance_type"),
        ({"n_components": 0}, ValueError, "n_components must be an integer >= 1"),
        ({"n_components": 2.5}, TypeError, "n_components must be an integer"),
        ({"n_chains": 0}, ValueError, "n_chains must be"),
        ({"backend": "em"}, ValueError, "backend must be one of"),
        ({"max_iter": 0}, ValueError, "max_iter must be"),
        ({"max_iter": 10, "backend": "nuts"}, ValueError, "max_iter applies to"),
        ({"max_iter": 10, "backend_options": {"num_steps": 5}}, ValueError, "max_iter and"),
        ({"priors": {"alpha_shape": 1.0}}, TypeError, "priors must be a dpgmm_ppl.Priors"),
        ({"backend_options": [("num_steps", 5)]}, TypeError, "backend_options must be a dict"),
        ({"backend_options": {"num_chains": 2}}, ValueError, r"n_chains"),
        ({"backend_options": {"num_warmup": 2}}, TypeError, "backend 'map' does not take"),
        ({"random_state": "seed"}, ValueError, "random_state must be None, an int"),
        ({"random_state": -1}, ValueError, "random_state must be None, an int"),
    ],
)
def test_bad_parameters_raise_at_fit(params, error, match):
    estimator = DirichletProcessGMM(**params)  # __init__ only stores them
    with pytest.raises(error, match=match):
        estimator.fit(np.zeros((10, 2)))


def test_sample_checks_its_argument(fitted):
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        fitted.sample(0)
