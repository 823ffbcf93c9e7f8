"""Each backend's ``init`` / ``step``, driven by hand, against its ``run``.

MAP and SVI: the losses and the final point of a few hundred hand-driven
steps are those of the backend's compiled loop, up to float32 rounding (the
loop runs inside one program, the hand-driven steps one call at a time).
NUTS: the steps, laid out as the sampler lays out its loop, give its draws
bit for bit, and a chain driven one call at a time recovers an exact
(conjugate) posterior.
"""

import warnings

import jax
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.diagnostics import effective_sample_size

import dpgmm_ppl
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.infer import map as map_backend
from dpgmm_ppl.infer import nuts as nuts_backend
from dpgmm_ppl.infer import svi as svi_backend
from dpgmm_ppl.infer._nuts_starts import init_positions
from dpgmm_ppl.infer.guides import make_guide

NUM_STEPS = 300


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-4.0, 1.0, 60), rng.normal(3.0, 1.0, 40)])


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("objective, history_every", [("occam", 1000), ("constrained", 50)])
def test_map_steps_by_hand_give_the_losses_and_optimum_of_run(data, objective, history_every):
    # history_every above num_steps: run_map never reorders the components
    # (a step of its loop that is not an optimiser step); "constrained" never does.
    density = build_log_density(data, num_components=4, parameterization="noncentered")
    optimizer = optax.adam(0.05)
    rng_key = jax.random.PRNGKey(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        output = map_backend.run_map(
            rng_key, density, num_chains=2, optimizer=optimizer, num_steps=NUM_STEPS,
            history_every=history_every, chain_method="sequential", objective=objective,
        )
    one_step = jax.jit(
        lambda state: map_backend.step(state, density, optimizer, objective=objective)
    )
    for chain, chain_key in enumerate(jax.random.split(rng_key, 2)):
        state = map_backend.init(chain_key, density, optimizer)
        losses, finite = [], []
        for _ in range(NUM_STEPS):
            state, info = one_step(state)
            losses.append(float(info.loss))
            finite.append(bool(info.is_finite))
        assert all(finite)
        np.testing.assert_allclose(losses, output.losses[chain], rtol=1e-5)
        assert losses[-1] < losses[0]  # the steps do descend
        run_position = jax.tree_util.tree_map(lambda leaf, c=chain: leaf[c, 0], output.positions)
        for hand, run in zip(_leaves(state.position), _leaves(run_position)):
            np.testing.assert_allclose(hand, run, rtol=1e-4, atol=1e-4)


def test_map_init_takes_a_position_as_it_is(data):
    density = build_log_density(data, num_components=3, parameterization="noncentered")
    optimizer = optax.sgd(0.0)
    state = map_backend.init(density.init_position, density, optimizer)
    state, info = map_backend.step(state, density, optimizer, objective="unconstrained")
    # A zero learning rate: the loss is the potential at the start.
    np.testing.assert_allclose(
        float(info.loss), float(density.potential_fn(density.init_position, density.data)),
        rtol=1e-6,
    )


def test_svi_steps_by_hand_give_the_losses_and_draws_of_run(data):
    density = build_log_density(data, num_components=4)
    optimizer = optax.adam(0.03)
    rng_key = jax.random.PRNGKey(5)
    num_samples = 50
    output = svi_backend.run_svi(
        rng_key, density, num_chains=1, guide="diagonal", rank=2, optimizer=optimizer,
        num_steps=NUM_STEPS, num_particles=2, num_samples=num_samples, history_every=50,
        chain_method="sequential", parameterization="centered",
    )
    key_init, key_fit, key_draws = jax.random.split(jax.random.split(rng_key, 1)[0], 3)
    state = svi_backend.init(key_init, density, optimizer)
    one_step = jax.jit(
        lambda key, state: svi_backend.step(key, state, density, optimizer, num_particles=2)
    )
    losses = []
    for index in range(NUM_STEPS):
        state, info = one_step(jax.random.fold_in(key_fit, index), state)
        losses.append(float(info.loss))
    np.testing.assert_allclose(losses, output.losses[0], rtol=1e-5)
    flat, unravel = ravel_pytree(density.init_position)
    draws = make_guide("diagonal", flat.shape[0]).sample(state.params, key_draws, num_samples)
    hand = jax.vmap(unravel)(draws)
    run = jax.tree_util.tree_map(lambda leaf: leaf[0], output.positions)
    for hand_leaf, run_leaf in zip(_leaves(hand), _leaves(run)):
        np.testing.assert_allclose(hand_leaf, run_leaf, rtol=1e-3, atol=1e-3)


def test_nuts_steps_in_a_scan_give_the_sampler_s_draws_bit_for_bit(data):
    density = build_log_density(data, num_components=4, parameterization="noncentered")
    settings = dict(num_warmup=30, target_accept_prob=0.8, dense_mass=False, max_tree_depth=5)
    num_samples = 20
    rng_key = jax.random.PRNGKey(3)
    output = nuts_backend.run_nuts(
        rng_key, density, num_chains=1, num_samples=num_samples, chain_method="sequential",
        num_init_steps=0, parameterization="noncentered", centered_sticks=0, **settings,
    )
    init_key, sample_key = jax.random.split(rng_key)
    starts = init_positions(init_key, density, 1, 0)
    # Laid out as the sampler's program lays out its loop (chains under
    # lax.map, the data and priors as arguments), so that XLA compiles the
    # same arithmetic: a chain is chaotic, and one call per step rounds
    # differently enough for the trees to part after a few dozen steps.
    bound = lambda data, params: density._replace(data=data, params=params)

    @jax.jit
    def chains(keys, starts, data, params):
        def body(state, _):
            state, info = nuts_backend.step(state, bound(data, params), **settings)
            return state, (state.z, info.n_steps)

        def one_chain(key_and_start):
            key, start = key_and_start
            state = nuts_backend.init(key, bound(data, params), start, **settings)
            state, _ = jax.lax.scan(body, state, None, length=settings["num_warmup"])
            return jax.lax.scan(body, state, None, length=num_samples)[1]

        return jax.lax.map(one_chain, (keys, starts))

    draws, n_steps = chains(
        jax.random.split(sample_key, 1), starts, density.data, density.params
    )
    np.testing.assert_array_equal(n_steps, output.sample_stats["n_steps"])
    for name, run in output.positions.items():
        np.testing.assert_array_equal(draws[name], run, err_msg=name)


def test_a_nuts_chain_by_hand_finds_the_exact_posterior_of_a_known_scale_mean():
    rng = np.random.default_rng(11)
    sigma = 2.0
    data = rng.normal(1.5, sigma, 100)
    density = build_log_density(
        data, num_components=1, priors=dpgmm_ppl.Priors(fixed_scale=sigma),
        parameterization="noncentered",
    )
    settings = dict(num_warmup=200, max_tree_depth=6)
    state = nuts_backend.init(jax.random.PRNGKey(7), density, **settings)
    one_step = jax.jit(lambda state: nuts_backend.step(state, density, **settings))
    draws, diverging = [], 0
    for index in range(settings["num_warmup"] + 1500):
        state, info = one_step(state)
        if index >= settings["num_warmup"]:
            draws.append(state.z)
            diverging += int(info.diverging)
    draws = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *draws)
    loc = np.asarray(jax.vmap(density.constrain_fn)(draws)["loc"][:, 0], np.float64)

    prior_mean = float(density.priors.loc_mean)
    prior_sd = float(density.priors.loc_scale)
    precision = 1.0 / prior_sd**2 + data.size / sigma**2
    post_mean = (prior_mean / prior_sd**2 + data.sum() / sigma**2) / precision
    post_sd = precision**-0.5
    ess = float(effective_sample_size(loc[None]))
    assert diverging == 0
    assert ess > 200
    assert abs(loc.mean() - post_mean) < 5 * post_sd / np.sqrt(ess)
    np.testing.assert_allclose(loc.std(), post_sd, rtol=0.15)
