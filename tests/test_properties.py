"""Properties that hold for every input, checked with hypothesis on a fixed seed.

- Stick-breaking and its inverse round-trip to float32 precision, and the
  non-centred chart's exponentials map back onto the same weights.
- Relabelling is idempotent, and relabelling a fit whose component labels were
  permuted gives the same result, in the pivot's own order.
- The co-clustering matrix is a symmetric similarity in [0, 1].

Shapes are fixed within each test, so the jitted label kernels compile once.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro.handlers import condition, reparam, seed, trace
from scipy.special import softmax
from scipy.stats import norm

import dpgmm_ppl
from dpgmm_ppl import labels
from dpgmm_ppl.distributions import StickBreakingWeights, stick_breaking, sticks_from_weights
from dpgmm_ppl.reparam import NonCenteredStickBreaking, exponentials_from_weights
from dpgmm_ppl.result import Fit

EPS32 = float(np.finfo(np.float32).eps)

fixed_seed = settings(derandomize=True, max_examples=50, deadline=None)

# ------------------------------------------------------------ stick-breaking

#: Sticks in [2**-20, 1 - 2**-20], at most 5 of them: every weight, a product
#: of at most 6 such factors, stays above 2**-120, a normal float32 (XLA
#: flushes subnormals to zero, which no inverse could undo).
sticks_strategy = st.lists(
    st.floats(min_value=2.0**-20, max_value=1.0 - 2.0**-20, width=32),
    min_size=1, max_size=5,
)


def exact_weights(sticks):
    """The weights of ``sticks``, in float64."""
    sticks = np.asarray(sticks, np.float64)
    remaining = np.concatenate([[1.0], np.cumprod(1.0 - sticks)])
    return np.append(sticks * remaining[:-1], remaining[-1])


def stick_round_trip_rtol(weights):
    """Relative error allowed on each recovered stick ``v_k``.

    ``log w_k = log v_k + sum_{j<k} log(1 - v_j)`` adds at most K terms of one
    sign, each rounded to within eps of itself, so its absolute error is at
    most ``K eps |log w_k|`` (plus eps for the last addition), and ``exp``
    turns that into the same relative error of ``w_k``. The inverse sums at
    most K positive weights (relative error <= K eps) and takes the ratio in
    log space: the same bound again. Hence ``2 K eps (1 + |log w_k|)``: the
    condition number of ``v_k`` in the logs is ``|log w_k|``, large for a
    small weight.
    """
    num_components = weights.size
    return 2.0 * num_components * EPS32 * (1.0 + np.abs(np.log(weights[:-1])))


@fixed_seed
@given(sticks=sticks_strategy)
def test_stick_breaking_round_trips_to_float32_precision(sticks):
    sticks = np.asarray(sticks, np.float32)
    weights = np.asarray(stick_breaking(jnp.asarray(sticks)))
    assert weights.dtype == np.float32
    assert np.all(weights >= 0)
    num_components = weights.size
    # Each weight is within K eps (1 + |log w_k|) of itself, relatively (the
    # forward bound below), so the sum is within K eps (1 + sum_k w_k |log w_k|)
    # of 1, and that entropy is at most log K.
    sum_tolerance = num_components * EPS32 * (1.0 + np.log(num_components))
    assert abs(float(np.sum(weights, dtype=np.float64)) - 1.0) <= sum_tolerance
    truth = exact_weights(sticks)
    # The forward half of the bound below: K roundings in log space, then exp.
    forward_rtol = num_components * EPS32 * (1.0 + np.abs(np.log(truth)))
    assert np.all(np.abs(weights - truth) <= forward_rtol * truth)
    recovered = np.asarray(sticks_from_weights(jnp.asarray(weights)), np.float64)
    relative_error = np.abs(recovered - sticks) / sticks
    assert np.all(relative_error <= stick_round_trip_rtol(truth)), relative_error


weights_strategy = st.lists(
    st.floats(min_value=2.0**-12, max_value=1.0), min_size=2, max_size=6
).map(lambda raw: (np.asarray(raw) / np.sum(raw)).astype(np.float32))


def weights_from_exponentials(exponentials, concentration, num_components):
    """The weights NonCenteredStickBreaking builds from given exponentials."""

    def model():
        numpyro.sample("weights", StickBreakingWeights(concentration, num_components))

    model = reparam(model, config={"weights": NonCenteredStickBreaking()})
    model = condition(model, data={"weights_exponentials": exponentials})
    return np.asarray(trace(seed(model, 0)).get_trace()["weights"]["value"], np.float64)


def noncentred_round_trip_rtol(weights):
    """Relative error allowed on each weight after weights -> exponentials -> weights.

    ``e_k / alpha = -(log R_{k+1} - log R_k)`` with ``R_k`` the reverse
    cumulative sums: the sums carry a relative error of at most K eps and each
    log its own eps, so ``log(1 - v_k)`` comes back with an absolute error
    ``d_k = eps (2K + |log R_k| + |log R_{k+1}| + 2 |log(1 - v_k)|)``. The
    stick itself, ``log v_k = log(-expm1(log(1 - v_k)))``, amplifies ``d_k``
    by ``(1 - v_k) / v_k`` (a small stick is ill-conditioned in this chart),
    and ``log w_k`` adds the ``d_j`` of every earlier stick; the final sum and
    ``exp`` add ``(K + 2) eps (1 + |log w_k|)``.
    """
    weights = np.asarray(weights, np.float64)
    num_components = weights.size
    remaining = np.cumsum(weights[::-1])[::-1]
    sticks = weights[:-1] / remaining[:-1]
    log_error = EPS32 * (2 * num_components + np.abs(np.log(remaining[:-1]))
                         + np.abs(np.log(remaining[1:])) + 2 * np.abs(np.log1p(-sticks)))
    earlier = np.concatenate([[0.0], np.cumsum(log_error)])
    own = np.append(log_error * (1.0 - sticks) / sticks, 0.0)
    return earlier + own + (num_components + 2) * EPS32 * (1.0 + np.abs(np.log(weights)))


@fixed_seed
@given(weights=weights_strategy, concentration=st.floats(min_value=0.05, max_value=20.0))
def test_noncentred_exponentials_map_back_onto_the_weights(weights, concentration):
    concentration = jnp.asarray(concentration, jnp.float32)
    exponentials = exponentials_from_weights(jnp.asarray(weights), concentration)
    assert np.all(np.asarray(exponentials) > 0)
    back = weights_from_exponentials(exponentials, concentration, int(weights.size))
    relative_error = np.abs(back - weights) / weights
    assert np.all(relative_error <= noncentred_round_trip_rtol(weights)), relative_error


# ------------------------------------------------------------ relabelling

#: Three well-separated components; every one holds data, so no assignment is a tie.
LOC = np.array([-12.0, 0.0, 12.0])
NUM_CHAINS, NUM_DRAWS, NUM_COMPONENTS = 2, 3, 3
DATA = np.concatenate([loc + np.linspace(-1.0, 1.0, 6) for loc in LOC]).astype(np.float32)


def make_fit(samples, lp, data=DATA):
    return Fit(backend="nuts", samples=samples, sample_stats={"lp": lp}, data=data,
               num_components=samples["weights"].shape[-1], priors=dpgmm_ppl.Priors())


@st.composite
def switched_fits(draw):
    """A fit whose draws scatter around LOC, each draw's labels permuted at random."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lead = (NUM_CHAINS, NUM_DRAWS)
    truth = {
        "weights": rng.dirichlet(np.full(NUM_COMPONENTS, 50.0), size=lead),
        "loc": LOC + 0.3 * rng.normal(size=lead + (NUM_COMPONENTS,)),
        "scale": rng.uniform(0.6, 1.4, size=lead + (NUM_COMPONENTS,)),
    }
    permutations = np.array(
        draw(st.lists(st.permutations(range(NUM_COMPONENTS)),
                      min_size=NUM_CHAINS * NUM_DRAWS, max_size=NUM_CHAINS * NUM_DRAWS))
    ).reshape(lead + (NUM_COMPONENTS,))
    samples = {name: np.take_along_axis(value, permutations, axis=-1).astype(np.float32)
               for name, value in truth.items()}
    samples["alpha"] = rng.gamma(2.0, 0.5, size=lead).astype(np.float32)
    lp = rng.permutation(NUM_CHAINS * NUM_DRAWS).reshape(lead).astype(np.float32)  # one best draw
    return make_fit(samples, lp)


def permute_components(fit, order):
    """The same fit with component ``k`` of every draw moved from position ``order[k]``."""
    samples = {name: (value[..., order] if name != "alpha" else value)
               for name, value in fit.samples.items()}
    return make_fit(samples, fit.sample_stats["lp"], fit.data)


SITES = ("weights", "loc", "scale")


@pytest.mark.parametrize("method", labels.METHODS)
@fixed_seed
@given(fit=switched_fits())
def test_relabelling_twice_is_relabelling_once(method, fit):
    once = labels.relabel(fit, method=method)
    # Not trivially idempotent: the scrambled draws now agree component by component.
    assert np.all(np.ptp(once.samples["loc"], axis=(0, 1)) < 2.0)
    twice = labels.relabel(once, method=method)
    for name in SITES:
        np.testing.assert_array_equal(twice.samples[name], once.samples[name], err_msg=name)
    np.testing.assert_array_equal(twice.permutations, once.permutations)


@pytest.mark.parametrize("method", labels.METHODS)
@fixed_seed
@given(fit=switched_fits(), order=st.permutations(range(NUM_COMPONENTS)))
def test_permuted_labels_relabel_to_the_same_draws(method, fit, order):
    """The pivot keeps its own labels, so the permuted fit comes out in the
    permuted pivot's order: ``relabel(permuted)[..., k] == relabel(fit)[..., order[k]]``."""
    order = np.asarray(order)
    reference = labels.relabel(fit, method=method)
    permuted = labels.relabel(permute_components(fit, order), method=method)
    for name in SITES:
        np.testing.assert_array_equal(permuted.samples[name], reference.samples[name][..., order],
                                      err_msg=name)
    # Label-invariant: the sorted component means agree whatever the order.
    np.testing.assert_array_equal(np.sort(permuted.samples["loc"].mean((0, 1))),
                                  np.sort(reference.samples["loc"].mean((0, 1))))


# ------------------------------------------------------------ co-clustering

@st.composite
def random_fits(draw):
    """A fit with arbitrary, overlapping components and points anywhere near them."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lead = (2, 2)
    samples = {
        "alpha": np.ones(lead, np.float32),
        "weights": rng.dirichlet(np.ones(NUM_COMPONENTS), size=lead).astype(np.float32),
        "loc": rng.normal(0.0, 4.0, size=lead + (NUM_COMPONENTS,)).astype(np.float32),
        "scale": rng.uniform(0.3, 3.0, size=lead + (NUM_COMPONENTS,)).astype(np.float32),
    }
    data = rng.normal(0.0, 6.0, size=12).astype(np.float32)
    return make_fit(samples, np.zeros(lead, np.float32), data)


def responsibilities(fit):
    """``r[s, n, k]`` in float64, straight from the Gaussian densities."""
    weights, loc, scale = (np.asarray(fit.samples[name], np.float64).reshape(-1, NUM_COMPONENTS)
                           for name in SITES)
    log_joint = np.log(weights)[:, None, :] + norm.logpdf(
        np.asarray(fit.data, np.float64)[None, :, None], loc[:, None, :], scale[:, None, :])
    return softmax(log_joint, axis=-1)


@fixed_seed
@given(fit=random_fits())
def test_coclustering_is_a_symmetric_similarity_in_the_unit_interval(fit):
    matrix = labels.coclustering_matrix(fit).matrix
    np.testing.assert_array_equal(matrix, matrix.T)
    # float32 sums of K products per draw: a few eps of slack at the ends.
    slack = 8 * EPS32
    assert np.all(matrix >= -slack) and np.all(matrix <= 1 + slack)
    # The diagonal is documented as mean_s sum_k r_sik^2 (two independent
    # allocations of a point agree), not 1: it lies in [1/K, 1] ...
    diagonal = np.diag(matrix)
    assert np.all(diagonal >= 1.0 / NUM_COMPONENTS - slack) and np.all(diagonal <= 1 + slack)
    resp = responsibilities(fit)
    np.testing.assert_allclose(diagonal, np.mean(np.sum(resp**2, axis=-1), axis=0), atol=1e-5)
    # ... and the matrix is a Gram matrix: P_ij^2 <= P_ii P_jj.
    assert np.all(matrix**2 <= np.outer(diagonal, diagonal) + slack)


@fixed_seed
@given(fit=switched_fits())
def test_coclustering_has_a_unit_diagonal_when_allocations_are_certain(fit):
    """Components 12 apart, points within 1 of one: every responsibility is 0 or 1
    to within 1e-11, so two points share a component with probability 0 or 1."""
    matrix = labels.coclustering_matrix(fit).matrix
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
    same_group = np.equal.outer(np.repeat(np.arange(3), 6), np.repeat(np.arange(3), 6))
    np.testing.assert_allclose(matrix, same_group.astype(float), atol=1e-6)
