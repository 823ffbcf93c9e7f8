"""The split-merge jumps between NUTS transitions (``split_merge``, ``infer/_nuts_moves.py``).

Exactness is checked where the answer is known: the jump kernel run on the
prior alone (a potential written here, independently of the package's) must
leave exact prior draws distributed as the prior, statistic by statistic,
within Monte-Carlo error; the merge and the split must be each other's
inverse with opposite log ratios; and through ``fit`` the posterior with
jumps must agree with the one without where NUTS alone mixes.
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import dpgmm_ppl
from dpgmm_ppl.density import build_log_density, rechart
from dpgmm_ppl.infer import _nuts_moves as moves
from dpgmm_ppl.reparam import StickLogit, log_weights_from_coordinates

PRIORS = SimpleNamespace(
    alpha_shape=2.0, alpha_rate=2.0, loc_mean=0.0, loc_scale=2.0, scale_shape=3.0, scale_rate=2.0,
)


#: Proposals per chain in the prior test.
NUM_JUMPS = 100

#: The two proposals compiled once for every pair (``a`` and ``b`` traced), as
#: the kernel runs them: these checks took 21 s alone, against 32 s op by op.
PROPOSALS = {
    name: jax.jit(proposal, static_argnums=6)
    for name, proposal in (("merge", moves.merge_proposal), ("split", moves.split_proposal))
}


def _prior_potential(z):
    """Minus the log prior density of an unconstrained non-centred position, by hand."""
    alpha = jnp.exp(z["alpha"])
    log_p = stats.gamma.logpdf(alpha, PRIORS.alpha_shape, scale=1 / PRIORS.alpha_rate) + z["alpha"]
    if "weights_logits" in z:
        log_p += jnp.sum(StickLogit(alpha).log_prob(z["weights_logits"]))
    e = jnp.exp(z["weights_exponentials"])
    log_p += jnp.sum(-e + z["weights_exponentials"])
    log_p += jnp.sum(stats.norm.logpdf(z["loc"], PRIORS.loc_mean, PRIORS.loc_scale))
    s = jnp.exp(z["scale"])
    shape, rate = PRIORS.scale_shape, PRIORS.scale_rate
    log_ig = shape * jnp.log(rate) - jax.scipy.special.gammaln(shape) - (shape + 1) * z["scale"] - rate / s
    return -(log_p + jnp.sum(log_ig + z["scale"]))


def _prior_draws(key, num, num_components, event_shape, num_centered):
    ka, ke, kl, ks, kc = jax.random.split(key, 5)
    alpha = jax.random.gamma(ka, PRIORS.alpha_shape, (num,)) / PRIORS.alpha_rate
    num_sticks = num_components - 1
    z = {
        "alpha": jnp.log(alpha),
        "weights_exponentials": jnp.log(
            jax.random.exponential(ke, (num, num_sticks - num_centered))
        ),
        "loc": PRIORS.loc_mean + PRIORS.loc_scale * jax.random.normal(
            kl, (num, num_components) + event_shape
        ),
        "scale": jnp.log(PRIORS.scale_rate)
        - jnp.log(jax.random.gamma(ks, PRIORS.scale_shape, (num, num_components) + event_shape)),
    }
    if num_centered:
        keys = jax.random.split(kc, num)
        z["weights_logits"] = jax.vmap(
            lambda k, a: StickLogit(jnp.full(num_centered, a)).sample(k)
        )(keys, alpha)
    return z


def _statistics(z):
    log_w = jax.vmap(log_weights_from_coordinates)(
        jnp.exp(z["alpha"]), z.get("weights_logits"), jnp.exp(z["weights_exponentials"])
    )
    w = jnp.exp(log_w)
    loc, scale = z["loc"].reshape(len(w), w.shape[1], -1), z["scale"].reshape(len(w), w.shape[1], -1)
    heaviest = jnp.argmax(w, axis=1)
    rows = jnp.arange(len(w))
    return {
        "w0": w[:, 0], "w_last": w[:, -1], "largest weight": w.max(1),
        "loc0": loc[:, 0, 0], "|loc0|": jnp.abs(loc[:, 0, 0]),
        "log scale0": scale[:, 0, 0], "log scale last": scale[:, -1, -1],
        "loc of heaviest": loc[rows, heaviest, 0], "log scale of heaviest": scale[rows, heaviest, 0],
        "log scale of lightest": scale[rows, jnp.argmin(w, axis=1), 0],
        "mean log scale": scale.mean((1, 2)),
    }


# 4,000 chains of 100 proposals: XLA's optimisation passes halve the run (tests/conftest.py).
@pytest.mark.xla_optimized
@pytest.mark.parametrize(
    ("event_shape", "num_centered"), [((), 0), ((2,), 2)], ids=["1d-noncentred", "2d-two-centred"]
)
def test_jumps_leave_exact_prior_draws_distributed_as_the_prior(event_shape, num_centered):
    """Jumps only, on the prior: from exact draws, 100 proposals later each
    statistic's mean must match that of fresh independent draws within 4.5
    standard errors (11 statistics; a correct kernel fails with probability
    about 1e-4). Measured: dropping the merge's log-Jacobian, the pair's
    probability or a power in the split's density moves some statistic by
    more than 6 standard errors."""
    num, num_components = 4000, 5
    start = _prior_draws(jax.random.PRNGKey(0), num, num_components, event_shape, num_centered)
    fresh = _prior_draws(jax.random.PRNGKey(1), num, num_components, event_shape, num_centered)
    jump = moves.make_jumps(_prior_potential, num_centered, num_jumps=NUM_JUMPS)
    keys = jax.random.split(jax.random.PRNGKey(2), num)

    def run(key, z):
        potential, grad = jax.value_and_grad(_prior_potential)(z)
        return jump(key, z, potential, grad, 50, PRIORS)

    z, potential, _, accepted = jax.jit(jax.vmap(run))(keys, start)
    # Every jump's proposals: a tenth or more must be accepted, or the test tests nothing.
    assert float(jnp.mean(accepted)) / NUM_JUMPS > 0.1
    np.testing.assert_allclose(potential, jax.vmap(_prior_potential)(z), rtol=1e-4, atol=1e-3)
    after, reference = _statistics(z), _statistics(fresh)
    for name in after:
        x, y = np.asarray(after[name], np.float64), np.asarray(reference[name], np.float64)
        error = np.sqrt(x.var() / num + y.var() / num)
        assert abs(x.mean() - y.mean()) < 4.5 * error, (name, x.mean(), y.mean(), error)


@pytest.mark.parametrize("dim", [1, 2])
def test_merge_and_split_are_inverse_with_opposite_log_ratios(dim):
    """The proposal is a bijection of (position, auxiliaries): a merge undone by
    the split of the same pair, and the reverse, return the start to float32
    rounding, and the two log ratios (densities of the auxiliaries, Jacobian,
    pair probabilities) add to zero, as detailed balance needs."""
    x = np.random.default_rng(0).normal(size=(300, dim)) * np.array([1.0, 3.0][:dim])
    x[:100] += 4.0
    data = x[:, 0] if dim == 1 else x
    density = rechart(build_log_density(data, num_components=6, parameterization="noncentered"), 2)
    seeded = density.seed_position(jax.random.PRNGKey(0), density.data)
    z = jax.tree_util.tree_map(
        lambda v: v + 0.3 * jax.random.normal(jax.random.PRNGKey(1), v.shape), seeded
    )
    priors, num_data = density.params.priors, density.params.num_data
    event_shape = z["loc"].shape[1:]
    for a, b in [(0, 4), (3, 1), (5, 2)]:
        spare = moves._draw_spare(jax.random.PRNGKey(a), 0.0, num_data, priors, event_shape)
        split = moves._draw_split(jax.random.PRNGKey(b), event_shape)
        pair = jnp.asarray(a), jnp.asarray(b)
        for forward, backward, aux in [("merge", "split", spare), ("split", "merge", split)]:
            new, new_aux, log_ratio = PROPOSALS[forward](z, aux, *pair, num_data, priors, 2)
            back, back_aux, back_log_ratio = PROPOSALS[backward](
                new, new_aux, *pair, num_data, priors, 2
            )
            for before, after in zip(jax.tree_util.tree_leaves((z, aux)),
                                     jax.tree_util.tree_leaves((back, back_aux))):
                np.testing.assert_allclose(after, before, atol=1e-4)
            assert abs(float(log_ratio + back_log_ratio)) < 1e-3, (a, b, forward)
            # The pair's total weight is kept: only the pair's weights change.
            w, w_new = (jnp.exp(moves._log_weights(p)) for p in (z, new))
            others = np.setdiff1d(np.arange(6), [a, b])
            np.testing.assert_allclose(w_new[others], w[others], rtol=1e-4)
            np.testing.assert_allclose(w_new[a] + w_new[b], w[a] + w[b], rtol=1e-4)


def test_merge_matches_the_pairs_first_two_moments():
    """After a merge the kept component has the pair's mean and variance per dimension."""
    x = np.random.default_rng(1).normal(size=(200, 2))
    density = build_log_density(x, num_components=4, parameterization="noncentered")
    z = density.seed_position(jax.random.PRNGKey(3), density.data)
    priors, num_data = density.params.priors, density.params.num_data
    spare = moves._draw_spare(jax.random.PRNGKey(4), 0.0, num_data, priors, (2,))
    new, _, _ = PROPOSALS["merge"](z, spare, jnp.asarray(1), jnp.asarray(2), num_data, priors, 0)
    w = np.exp(np.asarray(moves._log_weights(z), np.float64))
    loc, var = np.asarray(z["loc"], np.float64), np.exp(2 * np.asarray(z["scale"], np.float64))
    share = w[[1, 2]] / w[[1, 2]].sum()
    mean = share @ loc[[1, 2]]
    second = share @ (var[[1, 2]] + loc[[1, 2]] ** 2)
    np.testing.assert_allclose(new["loc"][1], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(2 * np.asarray(new["scale"][1])), second - mean**2, rtol=1e-4)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"split_merge": -1}, ValueError, "split_merge must be an integer >= 0, got -1"),
        ({"split_merge": True}, TypeError, "split_merge must be an integer"),
        ({"split_merge": 2, "parameterization": "centered"}, ValueError,
         "split_merge needs parameterization='noncentered'"),
        ({"split_merge": 2, "covariance": "full"}, ValueError, "split_merge needs covariance='diag'"),
    ],
)
def test_bad_split_merge_is_refused_before_any_work(options, error, match):
    x = np.random.default_rng(0).normal(size=(40, 2))
    with pytest.raises(error, match=match):
        dpgmm_ppl.fit(x, backend="nuts", num_components=3, num_warmup=5, num_samples=5, **options)


def _importance_posterior(x, priors, num_draws=2_000_000, seed=0):
    """Posterior means at K = 2 by self-normalised importance sampling from the
    prior (float64), with their Monte-Carlo standard errors."""
    rng = np.random.default_rng(seed)
    log_weights, values = [], []
    for _ in range(num_draws // 250_000):
        n = 250_000
        alpha = rng.gamma(priors.alpha_shape, 1 / priors.alpha_rate, n)
        v = rng.beta(1.0, alpha)
        w = np.stack([v, 1 - v], 1)
        loc = rng.normal(priors.loc_mean, priors.loc_scale, (n, 2))
        scale = priors.scale_rate / rng.gamma(priors.scale_shape, 1.0, (n, 2))
        log_density = (
            -0.5 * ((x[None, :, None] - loc[:, None]) / scale[:, None]) ** 2
            - np.log(scale[:, None]) - 0.5 * np.log(2 * np.pi) + np.log(np.maximum(w[:, None], 1e-300))
        )
        log_weights.append(np.logaddexp.reduce(log_density, axis=2).sum(1))
        values.append({"alpha": alpha, "largest weight": w.max(1),
                       "mixture mean": np.sum(w * loc, 1)})
    log_w = np.concatenate(log_weights)
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    means, errors = {}, {}
    for name in values[0]:
        v = np.concatenate([chunk[name] for chunk in values])
        means[name] = float(weights @ v)
        # Delta-method standard error of a self-normalised estimate.
        errors[name] = float(np.sqrt(np.sum(weights**2 * (v - means[name]) ** 2)))
    return means, errors


def test_nuts_with_jumps_through_fit_matches_an_exact_posterior():
    """Five points, two components: the posterior means of ``alpha``, the
    largest weight and the mixture's mean by importance sampling from the
    prior (2,000,000 draws) against ``fit(..., split_merge=3)``, within four
    combined Monte-Carlo standard errors (MCMC's from ArviZ's ESS), through
    the kernel as ``fit`` runs it (measured: without the merge's
    log-Jacobian the largest weight is off by 10 standard errors). The jumps
    are accepted and reported per draw, and the same key gives the same
    draws."""
    import arviz as az

    x = np.array([-2.1, -1.4, -0.3, 1.9, 2.6])
    priors = dpgmm_ppl.Priors(**vars(PRIORS))
    options = dict(backend="nuts", num_components=2, num_chains=4, num_warmup=500,
                   num_samples=2000, priors=priors, split_merge=3)
    fit = dpgmm_ppl.fit(x, rng_key=jax.random.PRNGKey(0), **options)
    accepted = np.asarray(fit.sample_stats["jumps_accepted"])
    assert accepted.mean() > 0.1
    again = dpgmm_ppl.fit(x, rng_key=jax.random.PRNGKey(0), **options)
    np.testing.assert_array_equal(again.samples["alpha"], fit.samples["alpha"])
    means, errors = _importance_posterior(x, PRIORS)
    weights = np.asarray(fit.samples["weights"], np.float64)
    draws = {
        "alpha": np.asarray(fit.samples["alpha"], np.float64),
        "largest weight": weights.max(-1),
        "mixture mean": np.sum(weights * np.asarray(fit.samples["loc"], np.float64), -1),
    }
    for name, values in draws.items():
        error = values.std() / np.sqrt(float(az.ess(values)))
        assert abs(values.mean() - means[name]) < 4 * np.hypot(error, errors[name]), (
            name, float(values.mean()), means[name], error, errors[name])


def test_a_transition_with_jumps_leaves_nuts_a_current_potential_and_gradient():
    """After each NUTS transition and its jumps, the kernel's state holds the
    potential and the gradient of its position, as NUTS's next trajectory
    needs (a stale one would start it from another point's energy)."""
    from dpgmm_ppl.infer._nuts_kernel import init_state, make_transition
    from dpgmm_ppl.infer._nuts_program import _with_jumps

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-2.0, 1.0, 40), rng.normal(2.0, 0.5, 30)])
    density = build_log_density(x, num_components=4, parameterization="noncentered")

    def potential_fn(z):
        return density.potential_fn(z, density.data)

    settings = dict(num_warmup=50, dense_mass=False, target_accept_prob=0.8)
    nuts = make_transition(potential_fn, max_tree_depth=5, energy_tolerance=20.0, **settings)
    transition = _with_jumps(nuts, potential_fn, density, 8, density.params)
    state = init_state(potential_fn, density.seed_position(jax.random.PRNGKey(0), density.data),
                       jax.random.PRNGKey(1), **settings)
    step = jax.jit(transition)
    potential_and_grad = jax.jit(jax.value_and_grad(potential_fn))
    total = 0
    for _ in range(60):
        state, (_, accepted) = step(state)
        total += int(accepted)
        potential, grad = potential_and_grad(state.z)
        np.testing.assert_allclose(state.potential_energy, potential, rtol=1e-5, atol=1e-4)
        for got, want in zip(jax.tree_util.tree_leaves(state.z_grad), jax.tree_util.tree_leaves(grad)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    assert total > 0
