"""Time :func:`dpgmm_ppl.labels.relabel` and the label-invariant summaries.

The problem is the target size: 4,000 draws (4 chains x 1,000) of a
25-component mixture, evaluated at the 19,000 points of the seed data
(:func:`dpgmm_ppl.datasets.seed_mixture`). Running NUTS that long is not
what is timed here, so the draws are made up: the seed mixture's four
components with Gaussian jitter plus 21 components of small weight, each
chain in its own random labelling and every chain switching labels once
half-way, so that every method has real work to do.

``baseline``
    The naive loop over draws in numpy/scipy: for each draw, the
    responsibilities of all points (``scipy.special.softmax``), the ``K x K``
    cost matrix against the pivot (the same cross-entropy cost as
    ``method="pivot"``) and ``linear_sum_assignment``. Timed on
    ``--baseline-draws`` draws and scaled to all of them.
``ours``
    ``relabel(fit, method=...)`` for each method, first call (``cold``,
    compilation included) and second call (``warm``); then
    ``num_clusters_posterior``, ``coclustering_matrix(max_points=2000)`` and
    ``point_partition`` (VI, 2,000 points optimised, the rest placed).

``ratio = ours / baseline``: below 1.0 ours is faster. Each relabelling is
also checked: the share of draws whose permutation undoes the made-up
switching exactly.

Run ``python benchmarks/relabel.py`` or, for a quick check,
``python benchmarks/relabel.py --num-draws 250``.

Measured on 2 CPU cores shared with another process using one to one and a
half of them (jax 0.10.2, float32), warm: pivot 4.1 s, ecr 9.0 s, stephens
24.8 s (pivot pass plus two iterations), against 144 s for the baseline
(36 ms per draw); ``num_clusters_posterior`` 7.1 s, ``coclustering_matrix``
6.0 s, ``point_partition`` 12.9 s. Every method restored the four real
components' labels in all 4,000 draws.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np

import dpgmm_ppl
from dpgmm_ppl import labels
from dpgmm_ppl.datasets import seed_mixture
from dpgmm_ppl.result import Fit


def made_up_fit(num_chains, num_draws, num_components, seed=0):
    """Draws around the seed mixture, switched per chain; returns the fit and the
    permutation per draw that restores the true labelling."""
    rng = np.random.default_rng(seed)
    mix = seed_mixture()
    extra = num_components - mix.weights.size
    shape = (num_chains, num_draws)
    small = rng.dirichlet(np.ones(extra), size=shape) * 0.01
    weights = np.concatenate([mix.weights * 0.99 * rng.uniform(0.97, 1.03, shape + (4,)), small], -1)
    weights /= weights.sum(-1, keepdims=True)
    loc = np.concatenate([mix.loc + 0.05 * rng.normal(size=shape + (4,)),
                          rng.normal(0.0, 10.0, shape + (extra,))], -1)
    scale = np.concatenate([mix.scale * np.exp(0.02 * rng.normal(size=shape + (4,))),
                            rng.uniform(0.5, 3.0, shape + (extra,))], -1)
    restore = np.empty(shape + (num_components,), np.int64)  # truth[k] = switched[restore[k]]
    for chain in range(num_chains):
        for half in (slice(None, num_draws // 2), slice(num_draws // 2, None)):
            switched = rng.permutation(num_components)  # switched[j] = truth[order[j]]
            restore[chain, half] = np.argsort(switched)
            for value in (weights, loc, scale):
                value[chain, half] = value[chain, half][..., switched]
    samples = {"alpha": rng.gamma(2.0, 0.5, shape), "weights": weights, "loc": loc, "scale": scale}
    samples = {name: value.astype(np.float32) for name, value in samples.items()}
    fit = Fit(backend="nuts", samples=samples,
              sample_stats={"lp": rng.normal(size=shape).astype(np.float32)},
              data=mix.data, num_components=num_components, priors=dpgmm_ppl.Priors())
    return fit, restore


def naive_pivot(fit, num_draws):
    """The per-draw numpy loop, on the first ``num_draws`` draws; returns seconds per draw."""
    from scipy.optimize import linear_sum_assignment
    from scipy.special import log_softmax, softmax

    x = fit.data.astype(np.float64)[:, None]
    flat = {name: fit.samples[name].reshape(-1, fit.num_components).astype(np.float64)
            for name in ("weights", "loc", "scale")}

    def log_joint(s):
        z = (x - flat["loc"][s]) / flat["scale"][s]
        return np.log(flat["weights"][s]) - np.log(flat["scale"][s]) - 0.5 * z * z

    pivot = int(np.argmax(fit.sample_stats["lp"]))
    target = -np.maximum(log_softmax(log_joint(pivot), axis=1), np.log(np.finfo(np.float32).tiny))
    start = time.perf_counter()
    for s in range(num_draws):
        cost = softmax(log_joint(s), axis=1).T @ target
        linear_sum_assignment(cost)
    return (time.perf_counter() - start) / num_draws


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def exact_share(relabelled, restore, num_real):
    """Share of draws whose ``num_real`` real components carry the same labels as in
    the first draw (components of negligible weight may take any label)."""
    # new[k] = original[total[k]] and truth[t] = original[restore[t]]: truth t sits at
    # the new label k with total[k] == restore[t].
    position = np.argsort(relabelled.permutations, axis=-1)  # position[original index] = k
    where = np.take_along_axis(position, restore[..., :num_real], axis=-1).reshape(-1, num_real)
    return float(np.mean(np.all(where == where[0], axis=-1)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-draws", type=int, default=1000, help="draws per chain (4 chains)")
    parser.add_argument("--num-components", type=int, default=25)
    parser.add_argument("--baseline-draws", type=int, default=40)
    parser.add_argument("--methods", default="pivot,ecr,stephens")
    parser.add_argument("--skip-summaries", action="store_true")
    args = parser.parse_args(argv)

    print(f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    fit, restore = made_up_fit(4, args.num_draws, args.num_components)
    total_draws = fit.num_chains * fit.num_draws
    print(f"{total_draws} draws x {fit.num_components} components x {fit.data.shape[0]} points")

    per_draw = naive_pivot(fit, min(args.baseline_draws, total_draws))
    baseline = per_draw * total_draws
    print(f"baseline (numpy loop, {args.baseline_draws} draws, scaled): {baseline:8.2f} s "
          f"({1e3 * per_draw:.1f} ms per draw)")
    print(f"{'method':<12}{'cold s':>9}{'warm s':>9}{'ratio':>8}{'exact':>8}")
    for method in args.methods.split(","):
        _, cold = timed(lambda method=method: labels.relabel(fit, method=method))
        relabelled, warm = timed(lambda method=method: labels.relabel(fit, method=method))
        print(f"{method:<12}{cold:>9.2f}{warm:>9.2f}{warm / baseline:>8.3f}"
              f"{exact_share(relabelled, restore, 4):>8.3f}")
    if args.skip_summaries:
        return
    print(f"{'summary':<34}{'cold s':>9}{'warm s':>9}")
    summaries = {
        "num_clusters_posterior": lambda: labels.num_clusters_posterior(fit),
        "coclustering_matrix(2000 points)": lambda: labels.coclustering_matrix(fit, max_points=2000),
        "point_partition(vi, 2000 points)": lambda: labels.point_partition(fit, max_points=2000),
    }
    for name, function in summaries.items():
        result, cold = timed(function)
        _, warm = timed(function)
        print(f"{name:<34}{cold:>9.2f}{warm:>9.2f}")
    ari = adjusted_rand_index(result.labels, seed_mixture().labels)
    print(f"point_partition: {result.labels.max() + 1} clusters, adjusted Rand index vs the "
          f"true labels {ari:.3f}")


def adjusted_rand_index(first, second):
    """Hubert & Arabie's adjusted Rand index of two labellings."""
    table = np.zeros((first.max() + 1, second.max() + 1))
    np.add.at(table, (first, second), 1)
    pairs = lambda n: n * (n - 1) / 2  # noqa: E731
    index = pairs(table).sum()
    rows, cols = pairs(table.sum(1)).sum(), pairs(table.sum(0)).sum()
    expected = rows * cols / pairs(first.size)
    return (index - expected) / (0.5 * (rows + cols) - expected)


if __name__ == "__main__":
    main()
