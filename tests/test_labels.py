"""Relabelling, the label-switching report and label-invariant summaries, against known answers."""

import dataclasses

import numpy as np
import pytest
from numpyro.diagnostics import split_gelman_rubin
from scipy import stats
from scipy.special import softmax

import dpgmm_ppl
from dpgmm_ppl import labels
from dpgmm_ppl._arviz_compat import is_datatree
from dpgmm_ppl.result import Fit

LOC = np.array([-5.0, 0.0, 5.0])
SCALE = np.array([0.7, 0.5, 0.8])
WEIGHTS = np.array([0.3, 0.4, 0.3])
#: Per chain, the permutation that undoes its switching: chain[KNOWN[c][k]] is true component k.
KNOWN = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [1, 0, 2]])


def make_fit(samples, lp, data, backend="nuts"):
    return Fit(backend=backend, samples=samples, sample_stats={"lp": lp}, data=data,
               num_components=samples["weights"].shape[-1], priors=dpgmm_ppl.Priors(),
               rng_key=np.array([0, 1], np.uint32))


def well_separated(rng, num_draws=500, num_points=300):
    """Draws of a tight posterior around three separated components; chains switched by KNOWN."""
    true_labels = rng.choice(3, size=num_points, p=WEIGHTS)
    data = (LOC[true_labels] + SCALE[true_labels] * rng.normal(size=num_points)).astype(np.float32)
    shape = (4, num_draws)
    truth = {
        "weights": rng.dirichlet(2000 * WEIGHTS, size=shape),
        "loc": LOC + 0.05 * rng.normal(size=shape + (3,)),
        "scale": SCALE * np.exp(0.03 * rng.normal(size=shape + (3,))),
    }
    samples = {"alpha": rng.gamma(2.0, 0.5, size=shape)}
    for name, value in truth.items():
        switched = np.empty_like(value)
        for chain, known in enumerate(KNOWN):
            switched[chain][..., known] = value[chain]
        samples[name] = switched.astype(np.float32)
    samples["alpha"] = samples["alpha"].astype(np.float32)
    lp = rng.normal(size=shape).astype(np.float32)
    lp[0, 0] = 10.0  # the pivot sits in chain 0, whose labels are the true ones
    return make_fit(samples, lp, data), true_labels


@pytest.fixture(scope="module")
def switched():
    return well_separated(np.random.default_rng(3))


def max_rhat(fit, names=("weights", "loc", "scale")):
    return max(float(np.max(split_gelman_rubin(np.asarray(fit.samples[name], np.float64))))
               for name in names)


def adjusted_rand_index(first, second):
    """Hubert & Arabie (1985), from the contingency table."""
    table = np.zeros((first.max() + 1, second.max() + 1))
    np.add.at(table, (first, second), 1)
    pairs = lambda n: n * (n - 1) / 2  # noqa: E731
    index = pairs(table).sum()
    rows, cols = pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
    expected = rows * cols / pairs(first.size)
    return (index - expected) / (0.5 * (rows + cols) - expected)


# ---------------------------------------------------------------- relabel


@pytest.mark.parametrize("method", labels.METHODS)
def test_relabel_undoes_known_switching(switched, method):
    fit, _ = switched
    assert max_rhat(fit, ("loc",)) > 1.5
    relabelled = labels.relabel(fit, method=method, rng_key=7)
    expected = np.broadcast_to(KNOWN[:, None, :], relabelled.permutations.shape)
    np.testing.assert_array_equal(relabelled.permutations, expected)
    assert max_rhat(relabelled) < 1.01
    np.testing.assert_allclose(relabelled.samples["loc"].mean((0, 1)), LOC, atol=0.01)
    # Label-invariant fields are untouched.
    np.testing.assert_array_equal(relabelled.samples["alpha"], fit.samples["alpha"])
    np.testing.assert_allclose(relabelled.log_predictive_density(fit.data[:20]),
                               fit.log_predictive_density(fit.data[:20]), rtol=1e-5)


def test_relabel_vector_data_onto_a_map_pivot(rng):
    """2-D components; the pivot is another fit (a one-draw MAP fit) in its own labelling."""
    loc = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
    shape = (2, 40)
    draws = {"weights": np.broadcast_to([0.3, 0.3, 0.4], shape + (3,)),
             "loc": loc + 0.05 * rng.normal(size=shape + (3, 2)),
             "scale": np.ones(shape + (3, 2))}
    order = np.array([2, 0, 1])  # chain 1 stores true component k at position order[k]
    samples = {name: value.copy() for name, value in draws.items()}
    for name in samples:
        samples[name][1][:, order] = draws[name][1]
    samples = {name: value.astype(np.float32) for name, value in samples.items()}
    samples["alpha"] = np.ones(shape, np.float32)
    data = (loc[rng.choice(3, 120)] + rng.normal(size=(120, 2))).astype(np.float32)
    fit = make_fit(samples, np.zeros(shape, np.float32), data)
    pivot_order = np.array([1, 2, 0])  # the MAP fit's component j is true component pivot_order[j]
    pivot = make_fit({"alpha": np.ones((1, 1)), "weights": np.full((1, 1, 3), 1 / 3),
                      "loc": loc[pivot_order][None, None], "scale": np.ones((1, 1, 3, 2))},
                     np.zeros((1, 1)), data, backend="map")
    relabelled = labels.relabel(fit, pivot=pivot)
    np.testing.assert_allclose(relabelled.samples["loc"].mean((0, 1)), loc[pivot_order], atol=0.05)
    # chain 0: new[j] = true[pivot_order[j]]; chain 1 stores true k at order[k].
    np.testing.assert_array_equal(relabelled.permutations[0], np.broadcast_to(pivot_order, (40, 3)))
    np.testing.assert_array_equal(relabelled.permutations[1],
                                  np.broadcast_to(order[pivot_order], (40, 3)))


def test_ecr_is_fixed_by_its_key(switched):
    fit, _ = switched
    # Overlapping points make the sampled allocations matter: x between components.
    x = np.linspace(-3.0, 3.0, 50).astype(np.float32)
    first = labels.relabel(fit, method="ecr", x=x, rng_key=1)
    again = labels.relabel(fit, method="ecr", x=x, rng_key=1)
    np.testing.assert_array_equal(first.permutations, again.permutations)


def test_relabel_composes_with_earlier_permutations(switched):
    fit, _ = switched
    rng = np.random.default_rng(5)
    scramble = np.stack([[rng.permutation(3) for _ in range(fit.num_draws)]
                         for _ in range(fit.num_chains)])
    scrambled = labels.apply_permutations(fit, scramble)
    np.testing.assert_array_equal(scrambled.permutations, scramble)
    relabelled = labels.relabel(scrambled, method="stephens")
    # Each stored permutation maps the backend's draw onto the final labels.
    for name in ("weights", "loc", "scale"):
        expected = np.take_along_axis(fit.samples[name], relabelled.permutations, axis=2)
        np.testing.assert_array_equal(relabelled.samples[name], expected)
    # The pivot (chain 0, draw 0) keeps its scrambled labels; every draw follows it.
    pivot_labels = scramble[0, 0]
    np.testing.assert_array_equal(relabelled.permutations,
                                  np.broadcast_to(KNOWN[:, None, pivot_labels], scramble.shape))


def test_permutations_round_trip_through_save_and_arviz(switched, tmp_path):
    fit, _ = switched
    relabelled = labels.relabel(fit)
    idata = relabelled.to_arviz()
    stats_group = idata["sample_stats"] if is_datatree() else idata.sample_stats
    assert stats_group["permutation"].dims == ("chain", "draw", "component")
    np.testing.assert_array_equal(stats_group["permutation"].values, relabelled.permutations)
    loaded = dpgmm_ppl.load(relabelled.save(tmp_path / "relabelled.nc"))
    np.testing.assert_array_equal(loaded.permutations, relabelled.permutations)
    assert set(loaded.sample_stats) == {"lp"}
    np.testing.assert_array_equal(loaded.samples["loc"], relabelled.samples["loc"])
    assert dpgmm_ppl.load(fit.save(tmp_path / "raw.nc")).permutations is None


def test_fit_without_rng_key_round_trips_through_save(switched, tmp_path):
    # A Fit built by hand (or by relabel of one) may carry no key at all.
    fit, _ = switched
    keyless = labels.relabel(dataclasses.replace(fit, rng_key=None))
    loaded = dpgmm_ppl.load(keyless.save(tmp_path / "keyless.nc"))
    assert loaded.rng_key is None
    np.testing.assert_array_equal(loaded.permutations, keyless.permutations)
    keyed = dpgmm_ppl.load(fit.save(tmp_path / "keyed.nc"))
    assert keyed.rng_key.dtype == np.uint32
    np.testing.assert_array_equal(keyed.rng_key, fit.rng_key)


# ---------------------------------------------------------------- report


def test_report_flags_switching_and_finds_each_chains_permutation(switched):
    fit, _ = switched
    report = labels.label_switching_report(fit)
    assert report.is_switching
    np.testing.assert_array_equal(report.chain_permutations, KNOWN)
    assert np.max(report.component_rhat["loc"]) > 1.5
    assert max(report.invariant_rhat.values()) < 1.05
    assert "label switching detected" in str(report)

    clean = labels.label_switching_report(labels.relabel(fit))
    assert not clean.is_switching
    np.testing.assert_array_equal(clean.chain_permutations, np.tile(np.arange(3), (4, 1)))
    assert np.max(clean.component_rhat["loc"]) < 1.01
    assert "no label switching detected" in str(clean)


def test_report_does_not_let_order_dependent_alpha_and_lp_veto_switching(switched):
    """Chains in other orders sit in other stick-breaking modes: alpha and lp shift per chain."""
    fit, _ = switched
    shifted_alpha = fit.samples["alpha"] + np.arange(4)[:, None].astype(np.float32)
    shifted_lp = fit.sample_stats["lp"] + 5.0 * np.arange(4)[:, None].astype(np.float32)
    moved = make_fit(dict(fit.samples, alpha=shifted_alpha), shifted_lp, fit.data)
    report = labels.label_switching_report(moved)
    assert report.invariant_rhat["alpha"] > 1.5 and report.invariant_rhat["lp"] > 1.5
    assert report.is_switching
    assert any("alpha and lp differ between chains" in note for note in report.notes)
    # A label-free quantity failing means the chains have not mixed: no verdict of switching.
    stuck = dict(fit.samples, scale=fit.samples["scale"] * (1 + np.arange(4))[:, None, None])
    report = labels.label_switching_report(make_fit(stuck, fit.sample_stats["lp"], fit.data))
    assert report.invariant_rhat["log_density(q50)"] > 1.1
    assert not report.is_switching
    assert any("have not mixed" in note for note in report.notes)


def test_report_on_map_restarts_gives_permutations_without_rhat(switched):
    fit, _ = switched
    restarts = make_fit({name: value[:, :1] for name, value in fit.samples.items()},
                        fit.sample_stats["lp"][:, :1], fit.data, backend="map")
    report = labels.label_switching_report(restarts)
    assert np.isnan(report.component_rhat["loc"]).all()
    assert np.isnan(report.invariant_rhat["lp"])
    assert any("at least 4 draws" in note for note in report.notes)
    np.testing.assert_array_equal(report.chain_permutations, KNOWN)
    assert report.is_switching


# ---------------------------------------------------------------- summaries


def responsibilities(fit, x):
    """Brute force, one draw at a time: (S, n, K)."""
    weights, loc, scale = (
        np.asarray(fit.samples[name], np.float64).reshape((-1,) + fit.samples[name].shape[2:])
        for name in ("weights", "loc", "scale")
    )
    out = []
    for w, m, s in zip(weights, loc, scale):
        log_normal = stats.norm.logpdf(x[:, None, ...], m, s)
        if log_normal.ndim == 3:
            log_normal = log_normal.sum(-1)
        out.append(softmax(np.log(w) + log_normal, axis=1))
    return np.stack(out)


@pytest.mark.parametrize("dim", [None, 2])
def test_coclustering_matches_a_loop_over_draws(rng, dim):
    shape = (2, 5, 3) + (() if dim is None else (dim,))
    samples = {"alpha": np.ones((2, 5), np.float32),
               "weights": rng.dirichlet(np.ones(3), size=(2, 5)).astype(np.float32),
               "loc": rng.normal(0, 1.5, size=shape).astype(np.float32),
               "scale": rng.uniform(0.7, 1.5, size=shape).astype(np.float32)}
    data = rng.normal(0, 2, size=(30,) + (() if dim is None else (dim,))).astype(np.float32)
    fit = make_fit(samples, np.zeros((2, 5), np.float32), data)
    result = labels.coclustering_matrix(fit)
    r = responsibilities(fit, data.astype(np.float64))
    expected = np.mean([resp @ resp.T for resp in r], axis=0)
    np.testing.assert_allclose(result.matrix, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.matrix, result.matrix.T)
    np.testing.assert_allclose(np.diag(result.matrix), np.mean(np.sum(r**2, axis=2), axis=0), rtol=1e-5)
    np.testing.assert_array_equal(result.indices, np.arange(30))

    subset = labels.coclustering_matrix(fit, max_points=12, rng_key=3)
    assert subset.indices.size == 12 and np.all(np.diff(subset.indices) > 0)
    np.testing.assert_allclose(subset.matrix, expected[np.ix_(subset.indices, subset.indices)],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", labels.LOSSES)
def test_point_partition_recovers_separated_clusters(switched, loss):
    fit, true_labels = switched  # switched labels: the summary must not care
    partition = labels.point_partition(fit, loss=loss)
    assert adjusted_rand_index(partition.labels, true_labels) >= 0.95
    # Numbered by decreasing size.
    sizes = np.bincount(partition.labels)
    assert np.all(np.diff(sizes) <= 0)
    placed = labels.point_partition(fit, loss=loss, max_points=60)
    assert placed.indices.size == 60
    assert adjusted_rand_index(placed.labels, true_labels) >= 0.95


def all_partitions(size):
    """Every partition of range(size) as a label array (restricted growth strings)."""
    def grow(prefix, top):
        if len(prefix) == size:
            yield np.array(prefix)
            return
        for label in range(top + 2):
            yield from grow(prefix + [label], max(top, label))
    yield from grow([0], 0)


def binder(labels_, similarity):
    same = labels_[:, None] == labels_[None]
    upper = np.triu_indices(labels_.size, 1)
    return np.sum(np.where(same, 1 - similarity, similarity)[upper])


def vi_lower_bound(labels_, similarity):
    same = labels_[:, None] == labels_[None]
    return np.mean(np.log2(same.sum(1)) - 2 * np.log2((same * similarity).sum(1))
                   + np.log2(similarity.sum(1)))


@pytest.mark.parametrize("loss, expected_loss", [("binder", binder), ("vi", vi_lower_bound)])
def test_point_partition_finds_the_exhaustive_optimum(rng, loss, expected_loss):
    shape = (2, 6, 3)
    samples = {"alpha": np.ones(shape[:2], np.float32),
               "weights": rng.dirichlet(3 * np.ones(3), size=shape[:2]).astype(np.float32),
               "loc": (np.array([-2.0, 0.0, 2.0]) + 0.6 * rng.normal(size=shape)).astype(np.float32),
               "scale": np.full(shape, 0.9, np.float32)}
    data = rng.normal(0, 2, size=8).astype(np.float32)
    fit = make_fit(samples, np.zeros(shape[:2], np.float32), data)
    similarity = labels.coclustering_matrix(fit).matrix.astype(np.float64)
    np.fill_diagonal(similarity, 1.0)
    values = [expected_loss(candidate, similarity) for candidate in all_partitions(8)]
    partition = labels.point_partition(fit, loss=loss)
    np.testing.assert_allclose(partition.expected_loss, min(values), rtol=1e-6)
    np.testing.assert_allclose(expected_loss(partition.labels, similarity), min(values), rtol=1e-6)


def test_num_clusters_counts_occupied_and_heavy_components(rng):
    num_draws = 400
    weights = np.tile([0.5, 0.472, 0.02, 0.008, 0.0], (1, num_draws, 1))
    weights[0, ::2] = [0.5, 0.472, 0.005, 0.023, 0.0]  # another small component above 0.01
    weights[0, 1::4] = [0.5, 0.46, 0.02, 0.02, 0.0]  # a quarter of the draws: two above 0.01
    samples = {"alpha": np.ones((1, num_draws)), "weights": weights,
               "loc": np.tile([-3.0, 3.0, 1e3, -1e3, 2e3], (1, num_draws, 1)),
               "scale": np.ones((1, num_draws, 5))}
    samples = {name: value.astype(np.float32) for name, value in samples.items()}
    data = np.concatenate([rng.normal(-3, 1, 40), rng.normal(3, 1, 40)]).astype(np.float32)
    result = labels.num_clusters_posterior(make_fit(samples, np.zeros((1, num_draws)), data))
    np.testing.assert_array_equal(result.values, np.arange(6))
    np.testing.assert_array_equal(result.occupied_probabilities, [0, 0, 1, 0, 0, 0])
    # Weights above 0.01: three in three quarters of the draws, four in the rest.
    np.testing.assert_allclose(result.above_threshold_probabilities, [0, 0, 0, 0.75, 0.25, 0])
    np.testing.assert_array_equal(result.above_threshold, np.sum(weights > 0.01, -1))


def test_occupied_clusters_follow_the_allocation_probabilities():
    """Three points, identical draws: P(one cluster) = prod_n r_n1 + prod_n r_n2, exactly."""
    num_draws = 4000
    samples = {"alpha": np.ones((1, num_draws)), "weights": np.full((1, num_draws, 2), 0.5),
               "loc": np.tile([-1.0, 1.0], (1, num_draws, 1)), "scale": np.ones((1, num_draws, 2))}
    samples = {name: value.astype(np.float32) for name, value in samples.items()}
    data = np.array([-0.5, 0.2, 0.9], np.float32)
    fit = make_fit(samples, np.zeros((1, num_draws)), data)
    r = responsibilities(fit, data.astype(np.float64))[0]
    together = np.prod(r[:, 0]) + np.prod(r[:, 1])
    result = labels.num_clusters_posterior(fit, rng_key=11)
    tolerance = 6 * np.sqrt(together * (1 - together) / num_draws)
    assert abs(result.occupied_probabilities[1] - together) < tolerance
    again = labels.num_clusters_posterior(fit, rng_key=11)
    np.testing.assert_array_equal(again.occupied, result.occupied)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, error, message", [
    (lambda fit: labels.relabel(fit, method="kmeans"), ValueError, "method must be one of"),
    (lambda fit: labels.relabel(fit.samples), TypeError, "fit must be a dpgmm_ppl.Fit"),
    (lambda fit: labels.relabel(fit, x=np.zeros((5, 2))), ValueError, r"x must have shape \(n,\)"),
    (lambda fit: labels.relabel(fit, pivot=(4, 0)), ValueError, "pivot must index a draw"),
    (lambda fit: labels.relabel(fit, pivot=3), TypeError, "pivot must be None, a Fit"),
    (lambda fit: labels.relabel(fit, pivot=make_fit(
        {name: value[..., :2] for name, value in fit.samples.items()}, fit.sample_stats["lp"],
        fit.data)), ValueError, "pivot must be a Fit with the same num_components"),
    (lambda fit: labels.apply_permutations(fit, np.zeros((4, 500, 3))), ValueError,
     "permutations must be an int array"),
    (lambda fit: labels.relabel(fit, method="stephens", max_iter=0), ValueError, "max_iter"),
    (lambda fit: labels.relabel(fit, tol=-1.0), ValueError, "tol must be"),
    (lambda fit: labels.label_switching_report(fit, threshold=0.9), ValueError,
     "threshold must be a number > 1"),
    (lambda fit: labels.num_clusters_posterior(fit, threshold=1.5), ValueError,
     r"threshold must be a number in \[0, 1\)"),
    (lambda fit: labels.point_partition(fit, loss="l2"), ValueError, "loss must be one of 'vi', 'binder'"),
    (lambda fit: labels.point_partition(fit, max_points=1), ValueError, "max_points"),
    (lambda fit: labels.coclustering_matrix(fit, max_points=2.5), TypeError, "max_points"),
    (lambda fit: labels.apply_permutations(fit, np.zeros((4, 500, 3), int)), ValueError,
     "permutation of range"),
    (lambda fit: labels.apply_permutations(fit, np.zeros((4, 3), int)), ValueError, "shape"),
])
def test_bad_input_is_rejected_with_a_clear_message(switched, call, error, message):
    fit, _ = switched
    with pytest.raises(error, match=message):
        call(fit)


@pytest.mark.parametrize("method", ["pivot", "stephens"])
def test_a_light_component_is_not_traded_onto_a_distant_label(method):
    """The reference's unused labels must not look closer than its distant used ones.

    The pivot (chain 0) has components at 0, 10 and 16 and two unused ones; the
    other restart splits the cluster at 10 into 10 and 11.5 (weight 0.08) and
    keeps a light component at 16 (weight 0.05) under another label. Exact
    cross-entropy costs, with the unused labels' probabilities at float32's
    floor, would put the 11.5 part on the label of 16 and the 16 component
    on an unused label.
    """
    rng = np.random.default_rng(0)
    data = np.concatenate([rng.normal(0, 1, 1000), rng.normal(10, 1, 900),
                           rng.normal(16, 1, 100)]).astype(np.float32)
    pivot = ([0.5, 0.45, 0.05, 0.0, 0.0], [0.0, 10.0, 16.0, -30.0, 40.0])
    other = ([0.5, 0.37, 0.0, 0.05, 0.08], [0.0, 10.0, -30.0, 16.0, 11.5])
    samples = {
        "alpha": np.ones((2, 1), np.float32),
        "weights": np.array([[pivot[0]], [other[0]]], np.float32),
        "loc": np.array([[pivot[1]], [other[1]]], np.float32),
        "scale": np.ones((2, 1, 5), np.float32),
    }
    fit = make_fit(samples, np.array([[1.0], [0.0]], np.float32), data, backend="map")
    relabelled = labels.relabel(fit, method=method)
    np.testing.assert_array_equal(relabelled.samples["loc"][1, 0, :3], [0.0, 10.0, 16.0])
