"""The package's NUTS trees keep their target exactly (``dpgmm_ppl.infer._nuts_tree``).

Independent chains at a fixed step size, started near the target, give
moments whose standard errors are exact (the spread over the chains), so
each check is a z-score against the known value:

* a correlated Gaussian with a dense mass matrix, plain leapfrog steps: the
  trees, their U-turn checks and the multinomial choices on their own;
* ``U(x, y) = x**2 / 2 + y**4`` at a step of 0.6, where plain NUTS diverges
  about once in twenty transitions (the quartic's curvature grows with
  ``|y|``) and the halving steps act: no divergence and the exact second and
  fourth moments. Without the reversibility test the same chains put
  ``E[y^2]`` some 25 standard errors too high, so the check can tell.

Four (or five) z-scores per check, each within 4.5: a correct sampler
fails one with probability about 3e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dpgmm_ppl.infer._nuts_kernel import init_state, make_transition
from dpgmm_ppl.infer._nuts_tree import MAX_HALVINGS, make_step

#: E[x^2], E[y^2] and E[x^4], E[y^4] under exp(-x^2 / 2 - y^4).
QUARTIC_TRUTH = {2: np.array([1.0, 0.3379891200336423]), 4: np.array([3.0, 0.25])}


def _quartic(position):
    return 0.5 * position[0] ** 2 + position[1] ** 4


def _run_chains(potential_fn, starts, *, step_size, num_steps=100, inverse_mass=None,
                dense_mass=False, leaves_and_leapfrog=None, **options):
    """Each chain's last 80 % of positions, and the divergent and irreversible counts
    (the total leaves and leapfrog steps appended to ``leaves_and_leapfrog``)."""
    def chain(key, start):
        state = init_state(potential_fn, start, key, num_warmup=0, dense_mass=dense_mass,
                           target_accept_prob=0.8, inverse_mass=inverse_mass)
        state = state._replace(adapt_state=state.adapt_state._replace(
            step_size=jnp.float32(step_size)))
        transition = make_transition(potential_fn, num_warmup=0, dense_mass=dense_mass,
                                     target_accept_prob=0.8, max_tree_depth=8, **options)

        def one(state, _):
            state, tree = transition(state)
            counts = (state.diverging, tree.irreversible, state.num_steps, tree.num_leapfrog)
            return state, (state.z, counts)

        return jax.lax.scan(one, state, None, length=num_steps)[1]

    keys = jax.random.split(jax.random.PRNGKey(0), starts.shape[0])
    draws, counts = jax.jit(jax.vmap(chain))(keys, starts)
    draws = np.asarray(draws, np.float64)[:, num_steps // 5:]
    diverging, irreversible, leaves, leapfrog = (int(np.sum(count)) for count in counts)
    if leaves_and_leapfrog is not None:
        leaves_and_leapfrog.extend([leaves, leapfrog])
    return draws, diverging, irreversible


def _scores(draws, truth, power):
    per_chain = (draws**power).mean(axis=1)
    error = per_chain.std(axis=0, ddof=1) / np.sqrt(per_chain.shape[0])
    return (per_chain.mean(axis=0) - truth) / error


def _quartic_scores(num_chains=4000, **options):
    """z-scores of E[x^2], E[y^2], E[x^4], E[y^4]; divergent and irreversible counts."""
    starts = jax.random.normal(jax.random.PRNGKey(1), (num_chains, 2)) * jnp.array([1.0, 0.55])
    draws, divergent, irreversible = _run_chains(_quartic, starts, step_size=0.6, **options)
    scores = np.concatenate([_scores(draws, QUARTIC_TRUTH[p], p) for p in (2, 4)])
    return scores, divergent, irreversible


def test_plain_trees_sample_a_correlated_gaussian_exactly():
    covariance = np.array([[4.0, 1.5, 0.0], [1.5, 1.0, 0.3], [0.0, 0.3, 0.25]])
    precision = jnp.asarray(np.linalg.inv(covariance), jnp.float32)

    def potential(position):
        return 0.5 * position @ precision @ position

    root = np.linalg.cholesky(covariance)
    starts = jax.random.normal(jax.random.PRNGKey(2), (1000, 3)) @ jnp.asarray(root.T)
    draws, divergent, irreversible = _run_chains(
        potential, starts, step_size=0.9, inverse_mass=jnp.asarray(covariance, jnp.float32),
        dense_mass=True, energy_tolerance=None,
    )
    assert divergent == 0 and irreversible == 0
    means = _scores(draws, np.zeros(3), 1)
    variances = _scores(draws, np.diag(covariance), 2)
    per_chain = (draws[..., 0] * draws[..., 1]).mean(axis=1)
    cross = (per_chain.mean() - covariance[0, 1]) / (per_chain.std(ddof=1) / np.sqrt(1000))
    np.testing.assert_array_less(np.abs(np.r_[means, variances, cross]), 4.5)


def test_halving_trees_sample_the_quartic_exactly_without_divergences():
    scores, divergent, irreversible = _quartic_scores(energy_tolerance=1.0)
    assert divergent == 0
    assert irreversible > 0  # the rule acts on this target at this step
    np.testing.assert_array_less(np.abs(scores), 4.5)


def test_plain_trees_diverge_on_the_quartic_at_that_step():
    _, divergent, _ = _quartic_scores(num_chains=200, energy_tolerance=None)
    assert divergent > 200  # about 1 in 20 of 20,000 transitions (22,593 of 400,000 at 4,000)


def test_without_the_reversibility_test_the_moments_are_biased(monkeypatch):
    import dpgmm_ppl.infer._nuts_kernel as kernel

    monkeypatch.setattr(kernel, "make_step",
                        lambda *args: make_step(*args, check_reverse=False))
    scores, _, irreversible = _quartic_scores(energy_tolerance=1.0)
    assert irreversible == 0 and scores[1] > 8.0, scores


@pytest.mark.parametrize("energy_tolerance", [1.0, 20.0])
def test_a_step_within_the_tolerance_costs_one_leapfrog_step(energy_tolerance):
    """On a standard Gaussian at a step of 0.2 the Hamiltonian changes by far less
    than 1 within a step: no step is halved or tested backwards."""
    starts = jax.random.normal(jax.random.PRNGKey(3), (50, 2))
    counts = []
    _run_chains(lambda position: 0.5 * jnp.sum(position**2), starts, step_size=0.2,
                num_steps=20, energy_tolerance=energy_tolerance, leaves_and_leapfrog=counts)
    leaves, leapfrog = counts
    assert leaves > 50 * 20 * 8 and leapfrog == leaves


def test_steps_are_halved_where_the_energy_changes_fast():
    """On the quartic at a step of 0.6 with a tolerance of 1, some steps are halved
    (each halving try costs 2, 4, .. leapfrog steps), never beyond 2**MAX_HALVINGS."""
    counts = []
    _, _, irreversible = _quartic_scores(num_chains=100, energy_tolerance=1.0,
                                         leaves_and_leapfrog=counts)
    leaves, leapfrog = counts
    assert leaves < leapfrog < leaves * (2 ** (MAX_HALVINGS + 2))
