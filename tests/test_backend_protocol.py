"""A backend is what its kind says: one defined here runs through the whole package.

The random-walk Metropolis sampler below exists only in this file. Registered
for the module (the registry patched, then restored), it must run end to end
through :func:`dpgmm_ppl.fit`, ArviZ, the plots, :func:`dpgmm_ppl.compare`,
saving and the CLI's choice of figures, every one of them deciding what to do
from its kind ``"sampler"``, never from its name. A scan of the package
source then checks that no module outside ``dpgmm_ppl/infer/`` compares
anything with a backend's name.
"""

import ast
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import dpgmm_ppl
from dpgmm_ppl import plots
from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.cli import _figures
from dpgmm_ppl.infer import BACKENDS, Backend, BackendOutput, get_backend
from dpgmm_ppl.priors import Priors
from dpgmm_ppl.result import Fit

NAME = "rwm"
#: Where the sampler's step size is steered during warmup: near the optimal
#: acceptance of a random walk in several dimensions (Roberts et al., 1997).
TARGET_ACCEPTANCE = 0.3
TRUE_LOC = (-4.0, 4.0)
POINTS_PER_CLUSTER = 60


# --- the backend ----------------------------------------------------------------------


def _run_chain(rng_key, density, num_warmup, num_samples, step_size):
    """One chain: Gaussian random-walk proposals on the flattened unconstrained
    position, accepted with probability ``min(1, p(proposal) / p(current))``.

    The step size adapts during warmup only (a Robbins-Monro step on its log
    towards :data:`TARGET_ACCEPTANCE`), then stays fixed, so that the kept
    draws come from a Metropolis kernel that leaves the posterior invariant.
    """
    start_key, warmup_key, sample_key = jax.random.split(rng_key, 3)
    flat, unravel = ravel_pytree(density.seed_position(start_key, density.data))

    def log_density(x):
        value = -density.potential_fn(unravel(x), density.data)
        return jnp.where(jnp.isnan(value), -jnp.inf, value)

    def transition(x, lp, log_step, key):
        move_key, accept_key = jax.random.split(key)
        proposal = x + jnp.exp(log_step) * jax.random.normal(move_key, x.shape, x.dtype)
        proposal_lp = log_density(proposal)
        log_ratio = jnp.where(jnp.isnan(proposal_lp - lp), -jnp.inf, proposal_lp - lp)
        accept = jnp.log(jax.random.uniform(accept_key, dtype=x.dtype)) < log_ratio
        accept_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        return jnp.where(accept, proposal, x), jnp.where(accept, proposal_lp, lp), accept_prob

    def warmup_step(state, inputs):
        x, lp, log_step = state
        key, iteration = inputs
        x, lp, accept_prob = transition(x, lp, log_step, key)
        log_step = log_step + (accept_prob - TARGET_ACCEPTANCE) / jnp.sqrt(iteration + 1.0)
        return (x, lp, log_step), None

    def sample_step(state, key):
        x, lp, log_step = state
        x, lp, accept_prob = transition(x, lp, log_step, key)
        return (x, lp, log_step), (x, lp, accept_prob)

    state = (flat, log_density(flat), jnp.log(jnp.asarray(step_size, flat.dtype)))
    iterations = jnp.arange(num_warmup, dtype=flat.dtype)
    state, _ = jax.lax.scan(warmup_step, state, (jax.random.split(warmup_key, num_warmup),
                                                 iterations))
    _, (xs, lps, accept_probs) = jax.lax.scan(
        sample_step, state, jax.random.split(sample_key, num_samples))
    return jax.vmap(unravel)(xs), lps, accept_probs


def run_rwm(rng_key, density, *, num_chains, num_warmup, num_samples, step_size,
            progress_bar=False):
    """The :class:`Backend` ``run``: ``num_chains`` independent random-walk chains."""
    del progress_bar  # nothing long enough to show

    @jax.jit
    def chains(key):
        keys = jax.random.split(key, num_chains)
        return jax.vmap(lambda one: _run_chain(one, density, num_warmup, num_samples,
                                               step_size))(keys)

    start = time.perf_counter()
    positions, lps, accept_probs = jax.block_until_ready(chains(rng_key))
    return BackendOutput(
        positions=positions,
        sample_stats={"lp": lps, "acceptance_rate": accept_probs},
        losses=None,
        history=None,
        history_steps=None,
        timing={"run_seconds": time.perf_counter() - start},
    )


def _validate(options):
    check_positive_int("num_samples", options["num_samples"])
    check_positive_int("num_warmup", options["num_warmup"], minimum=0)
    if not isinstance(options["step_size"], (int, float)) or not options["step_size"] > 0:
        raise ValueError(f"step_size must be a positive number, got {options['step_size']!r}")


RWM = Backend(
    name=NAME,
    defaults={"num_warmup": 1500, "num_samples": 2000, "step_size": 0.05,
              "progress_bar": False},
    run=run_rwm,
    validate=_validate,
    kind="sampler",
    quick_options={"num_warmup": 200, "num_samples": 200},
)


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registered():
    """The registry with the random-walk sampler added, for this module only."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(BACKENDS, NAME, RWM)
        yield


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    return np.concatenate(
        [rng.normal(loc, 1.0, POINTS_PER_CLUSTER) for loc in TRUE_LOC]).astype(np.float32)


@pytest.fixture(scope="module")
def rwm_fit(registered, data):
    return dpgmm_ppl.fit(data, backend=NAME, rng_key=0, num_components=3, num_chains=2)


def _heavy_locs(samples, chain):
    """Posterior means of ``loc`` of the two heaviest components of ``chain``, sorted."""
    weights = np.asarray(samples["weights"][chain]).mean(axis=0)
    heavy = np.argsort(-weights)[:2]
    return np.sort(np.asarray(samples["loc"][chain]).mean(axis=0)[heavy])


# --- the sampler, end to end ----------------------------------------------------------


def test_registry_lookup_names_the_known_backends(registered):
    assert get_backend(NAME) is RWM
    with pytest.raises(ValueError, match=r"backend must be one of \['map', 'nuts', 'rwm', 'svi'\]"):
        get_backend("metropolis")


def test_fit_of_the_new_backend_knows_its_kind(rwm_fit):
    assert (rwm_fit.backend, rwm_fit.kind) == (NAME, "sampler")
    assert rwm_fit.is_mcmc and not rwm_fit.is_point_estimate
    assert (rwm_fit.num_chains, rwm_fit.num_draws) == (2, 2000)


def test_random_walk_finds_the_two_clusters(rwm_fit, data):
    """Each chain's two heaviest components sit at the clusters' means.

    With 60 points a cluster, the posterior of a location is about
    ``N(sample mean, 1/60)``: sd 0.13. The prior (centred on the data's
    mean, as wide as the data) pulls it by less than 0.01, and the
    Monte-Carlo error of a mean of 2000 random-walk draws is 0.13 / sqrt(ESS),
    0.02 for an ESS of 40 (this one gives about 180); 0.1 from the cluster's
    sample mean is five such errors and fails a sampler off by most of a
    posterior sd. Against the true means, 0.5 is four sd of the sample mean
    of 60 points.
    """
    sample_means = np.array([data[:POINTS_PER_CLUSTER].mean(), data[POINTS_PER_CLUSTER:].mean()])
    for chain in range(rwm_fit.num_chains):
        locs = _heavy_locs(rwm_fit.samples, chain)
        np.testing.assert_allclose(locs, sample_means, atol=0.1)
        np.testing.assert_allclose(locs, TRUE_LOC, atol=0.5)
        heavy = np.argsort(-np.asarray(rwm_fit.samples["weights"][chain]).mean(axis=0))[:2]
        # The clusters' unit spread: the posterior sd of a scale is about 0.1.
        scales = np.asarray(rwm_fit.samples["scale"][chain]).mean(axis=0)[heavy]
        np.testing.assert_allclose(scales, 1.0, atol=0.35)
    acceptance = np.mean(rwm_fit.sample_stats["acceptance_rate"])
    assert 0.1 < acceptance < 0.6, acceptance


def test_pooled_predictions_of_a_sampler(rwm_fit):
    """A sampler's draws are pooled by default, MAP's best restart is not."""
    grid = np.array([-4.0, 0.0, 4.0], np.float32)
    pooled = rwm_fit.log_predictive_density(grid)
    per_chain = [rwm_fit.log_predictive_density(grid, chain=c) for c in range(2)]
    np.testing.assert_allclose(
        np.exp(pooled), np.mean(np.exp(per_chain), axis=0), rtol=1e-4)
    # Two equal clusters of unit spread: about N(4 | 4, 1) / 2 = 0.2 at each centre.
    np.testing.assert_allclose(np.exp(pooled[[0, 2]]), 0.2, atol=0.04)


def test_to_arviz_keeps_the_draws_and_the_chains_agree(rwm_fit):
    import arviz as az

    idata = rwm_fit.to_arviz()
    np.testing.assert_allclose(idata.posterior["loc"].values, rwm_fit.samples["loc"])
    assert idata.posterior.attrs["backend_kind"] == "sampler"
    # lp does not care how the components are labelled, so two chains of a
    # correct sampler of this unimodal-up-to-labels posterior agree on it.
    rhat = float(az.rhat(idata.sample_stats["lp"].to_dataset())["lp"])
    assert rhat < 1.1, rhat


def test_plots_treat_it_as_a_posterior(rwm_fit):
    import matplotlib.pyplot as plt

    ax = plots.plot_predictive_comparison({"random walk": rwm_fit})
    try:
        # A posterior gets an HDI band around its mean line; an optimum would not.
        (band,) = ax.collections
        assert band.get_paths()[0].vertices[:, 1].max() > ax.lines[0].get_ydata().max()
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert f"random walk ({NAME})" in labels
    finally:
        plt.close(ax.figure)
    ax = plots.plot_weights(rwm_fit)
    try:
        # The line of mean sorted weights pools both chains' draws.
        weights = np.asarray(rwm_fit.samples["weights"]).reshape(-1, 3)
        expected = (-np.sort(-weights / weights.sum(-1, keepdims=True), axis=-1)).mean(axis=0)
        np.testing.assert_allclose(ax.lines[-1].get_ydata(), expected, rtol=1e-5)
        np.testing.assert_allclose(expected[:2], 0.5, atol=0.1)
    finally:
        plt.close(ax.figure)


def test_compare_reports_it_as_markov_chains(registered, data):
    table = dpgmm_ppl.compare(data, backends=(NAME,), num_components=3, num_chains=2,
                              backend_options={NAME: {"num_warmup": 1000, "num_samples": 500}})
    fit = table.fits[NAME]
    assert table["backend"] == [NAME]
    # A posterior: alpha is the mean over every draw, not the best chain's point.
    assert table["alpha"][0] == pytest.approx(float(np.mean(fit.samples["alpha"])))
    # Markov chains: an effective sample size per second of lp; no divergences recorded.
    assert table["ess_per_second_lp"][0] > 0
    assert table["divergences"] == [None]
    assert table["heldout_log_density"] == [None]


def test_cli_figures_follow_the_kind(registered):
    drawn, skipped = _figures.plan_figures(NAME, (100,))
    assert drawn == ["density.png", "weights.png", "trace.png"]
    assert sorted(skipped) == ["components.png", "loss.png", "training.gif"]
    assert skipped["loss.png"] == "RWM records no loss or optimisation history"


def test_saved_fit_keeps_its_kind_once_unregistered(rwm_fit, tmp_path, monkeypatch):
    path = rwm_fit.save(tmp_path / "rwm.nc")
    monkeypatch.delitem(BACKENDS, NAME)
    loaded = dpgmm_ppl.load(path)
    assert (loaded.backend, loaded.kind, loaded.is_mcmc) == (NAME, "sampler", True)
    np.testing.assert_allclose(loaded.samples["loc"], rwm_fit.samples["loc"])


def test_kind_of_hand_made_fits():
    samples = {"alpha": np.ones((2, 1)), "weights": np.array([[[0.5, 0.5]], [[0.9, 0.1]]]),
               "loc": np.zeros((2, 1, 2)), "scale": np.ones((2, 1, 2))}
    stats = {"lp": np.array([[0.0], [1.0]]), "objective": np.array([[3.0], [-2.0]])}
    fits = {name: Fit(name, samples, stats, np.zeros(3), 2, Priors())
            for name in ("map", "svi", "nuts")}
    assert {name: fit.kind for name, fit in fits.items()} == {
        "map": "optimum", "svi": "variational", "nuts": "sampler"}
    # An optimum picks its best restart by the objective, anything else by lp.
    assert [fits[name].best_chain for name in ("map", "svi", "nuts")] == [0, 1, 1]
    unknown = Fit("someone-elses", samples, stats, np.zeros(3), 2, Priors())
    assert unknown.kind is None and not unknown.is_point_estimate and unknown.best_chain == 1
    given = Fit("someone-elses", samples, stats, np.zeros(3), 2, Priors(), kind="optimum")
    assert given.is_point_estimate and given.best_chain == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        Fit("map", samples, stats, np.zeros(3), 2, Priors(), kind="mode")


# --- no branch on a backend's name ----------------------------------------------------

NAMES = frozenset({"map", "svi", "nuts"})
PACKAGE = Path(dpgmm_ppl.__file__).parent


def _is_name(node):
    return isinstance(node, ast.Constant) and node.value in NAMES


def _names_in(node):
    """The backend names ``node`` holds: a literal name, or a tuple/list/set of them."""
    if _is_name(node):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [element.value for element in node.elts if _is_name(element)]
    return []


def name_branches(source):
    """``(line, what)`` of every comparison, membership test, dict key or ``case``
    against a literal backend name in ``source``; docstrings are strings, not
    comparisons, and are not looked at."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [(node.lineno, f"compared with {name!r}") for name in _names_in(operand)]
        elif isinstance(node, ast.Dict):
            found += [(node.lineno, f"dict key {key.value!r}")
                      for key in node.keys if key is not None and _is_name(key)]
        elif isinstance(node, ast.MatchValue) and _is_name(node.value):
            found.append((node.lineno, f"case {node.value.value!r}"))
    return sorted(found, key=lambda item: item[0])


def test_the_scan_sees_what_it_looks_for():
    source = '''
def f(fit, backend, options):
    """Compares nothing: fit.backend == "map" is prose here."""
    run(backend="map")
    if fit.backend == "map":
        pass
    if "nuts" != backend or backend in ("svi", "nuts"):
        pass
    table = {"map": 1, **options}
    match backend:
        case "svi":
            pass
'''
    assert name_branches(source) == [
        (5, "compared with 'map'"), (7, "compared with 'nuts'"), (7, "compared with 'svi'"),
        (7, "compared with 'nuts'"), (9, "dict key 'map'"), (11, "case 'svi'")]


def test_no_module_outside_infer_branches_on_a_backend_name():
    infer = PACKAGE / "infer"
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py")) if infer not in path.parents
        for line, what in name_branches(path.read_text(encoding="utf-8"))
    ]
    assert not found, "ask the backend's kind instead:\n" + "\n".join(found)
