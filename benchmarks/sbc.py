"""Simulation-based calibration of ``backend="nuts"`` (Talts et al. 2018).

For each replication ``r``: draw parameters and ``num_data`` points from the
prior (:func:`dpgmm_ppl.dpgmm` with ``data=None`` under
:class:`numpyro.infer.Predictive`), sample the posterior of those points with
the NUTS backend's sampler and starting points, thin the draws, and record the
rank of the true value of each statistic among them. If the sampler is right,
every rank is uniform on ``0 .. num_draws``; a chi-square test on ``num_bins``
equal bins gives the p-values printed at the end.

Statistics
    ``alpha``: the concentration. It depends on the order of the components
    (the stick-breaking prior is not exchangeable), so it also tests the
    backend's choice of starting every chain with the components in order of
    decreasing weight.
    ``largest_weight``: the largest mixture weight (label-invariant).
    ``log_likelihood``: the log density of the replication's data under the
    draw (label-invariant).

One compiled program serves every replication: the shared density's
``potential_fn(position, data)`` takes the data as an argument, so the
backend's own kernel (``dpgmm_ppl.infer._nuts_kernel``: NumPyro's warmup
adaptation around the package's trees, halving leapfrog steps included)
gets the data as an argument and the whole warmup-and-sampling loop is
compiled once, then run under ``lax.map`` for each chunk of replications.

The priors are fixed numbers (the model's standardised defaults: locations
N(0, 2), scales InverseGamma(2, 1), alpha Gamma(1, 1)), not scaled from each
replication's data as :func:`dpgmm_ppl.fit` would do: SBC needs the posterior
of the same prior that made the data.

Run ``python benchmarks/sbc.py`` (200 replications of 50 points, 5
components) or ``python benchmarks/sbc.py --num-replications 20`` to try it;
``--parameterization centered`` runs NumPyro's own chart of the sticks.
``--charts noncentered centered auto`` runs every chart the backend can
choose through the public ``dpgmm_ppl.fit`` instead (:func:`run_sbc_fit`:
each replication one ``fit`` call, the later ones reusing the first one's
compiled programs) and prints one table; ``benchmarks/README.md`` has its
figures (the centred chart fails on all three statistics).
``noncentered+jumps`` and ``auto+jumps`` are the same charts with
``split_merge=4``, the split-merge jumps between NUTS transitions.
``tests/test_sbc.py`` (slow) runs :func:`run_sbc` at the reduced size below.

Measured (JAX 0.10.2, 2 shared CPU cores), chi-square p-values:

=====================  ========  ========  ========  ===========  ===========
run                    defaults  defaults  defaults  reduced      reduced
chart                  centred   non-c.    non-c.    centred      non-c.
seed                   0         0         1         0            0
=====================  ========  ========  ========  ===========  ===========
alpha                  0.0067    0.38      0.91      0.0034       0.20
largest_weight         0.10      0.027     0.37      0.21         0.96
log_likelihood         0.60      0.14      0.74      0.66         0.995
divergent (reps)       ~40 (9)   91 (14)   n/a       n/a          2 (2)
seconds                ~200      184       228       100          81
=====================  ========  ========  ========  ===========  ===========

"defaults": 500 warmup + 500 draws thinned by 5, 1000 descent steps at the
start; "reduced": 200 + 200 thinned by 2, 300 descent steps. Ranks run
0 .. 100 in 10 bins either way.
The table predates the matrix-product likelihood of
:class:`~dpgmm_ppl.GaussianMixture`, whose float32 rounding differs: the
reduced non-centred run now gives 0.89, 0.33 and 0.54 (18 divergent
transitions).

In the centred chart ``alpha`` is off at both sizes: the replications
whose true ``alpha`` ranks below almost every draw have a median true
``alpha`` of 0.12-0.13, against 0.67 over all. A small ``alpha`` pushes the
spare sticks towards 1 and their remainders towards 0, a funnel between
``alpha`` and the stick coordinates that NUTS under-explores. The
non-centred chart (:mod:`dpgmm_ppl.reparam`, now the NUTS default) takes
``alpha`` out of the prior of the stick coordinates, and the ranks of
``alpha`` pass. The divergences that remain come from the spare
components' locations and scales (free when their weight is small), which
no chart of the sticks changes.
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive
from scipy import stats

from dpgmm_ppl._frame import Frame
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.distributions import GaussianMixture
from dpgmm_ppl.infer._nuts_kernel import init_state, make_transition
from dpgmm_ppl.infer._nuts_starts import CANDIDATES_PER_CHAIN, sort_by_weight
from dpgmm_ppl.infer._nuts_starts import descend as descend_fn
from dpgmm_ppl.infer.nuts import NUTS, resolve_dense_mass, size_defaults
from dpgmm_ppl.model import dpgmm
from dpgmm_ppl.priors import SCALE_RATE_PER_SPREAD, Priors

STATISTICS = ("alpha", "largest_weight", "log_likelihood")


def _statistics(values, data):
    log_likelihood = GaussianMixture(values["weights"], values["loc"], values["scale"]).log_prob(data)
    return {
        "alpha": values["alpha"],
        "largest_weight": jnp.max(values["weights"]),
        "log_likelihood": jnp.sum(log_likelihood),
    }


def _size_biased_order(rng_key, values):
    """The components in a size-biased random order (Gumbel top-k on log weights)."""
    gumbel = jax.random.gumbel(rng_key, values["weights"].shape)
    order = jnp.argsort(-(jnp.log(values["weights"]) + gumbel))
    return {name: value if name == "alpha" else value[order] for name, value in values.items()}


def make_replication(
    density, *, num_warmup, num_samples, thinning, num_init_steps, options, order="weight"
):
    """``(rng_key, data) -> (statistics of the thinned draws, divergences)``."""
    descend = descend_fn(density, num_init_steps) if num_init_steps else None

    def start(rng_key, data):
        # As the backend does for one chain: the best of a few descended
        # k-means++ seedings, components in order of decreasing weight.
        keys = jax.random.split(rng_key, CANDIDATES_PER_CHAIN if descend else 1)
        positions = jax.vmap(lambda key: density.seed_position(key, data))(keys)
        if descend is None:
            return jax.tree_util.tree_map(lambda leaf: leaf[0], positions)
        ends = jax.lax.map(lambda one: descend(one, data), positions)
        potentials = jax.lax.map(lambda one: density.potential_fn(one, data), ends)
        best = jnp.argmin(jnp.where(jnp.isfinite(potentials), potentials, jnp.inf))
        end = jax.tree_util.tree_map(lambda leaf: leaf[best], ends)
        values = density.constrain_fn(end)
        if order == "size-biased":
            values = _size_biased_order(keys[0], values)
        else:
            values = sort_by_weight(values)
        return density.unconstrain_fn(values)

    # The backend's defaults for this many points (50 by default: the small-data ones).
    target_accept_prob, dense_mass, _, _ = size_defaults(
        density.num_data, density.parameterization,
        target_accept_prob=options["target_accept_prob"], dense_mass=options["dense_mass"],
        max_tree_depth=options["max_tree_depth"],
        max_warmup_tree_depth=options["max_warmup_tree_depth"],
        centered_sticks=options["centered_sticks"],
    )
    dense_mass = resolve_dense_mass(dense_mass, num_warmup, density.init_position)

    settings = dict(num_warmup=num_warmup, target_accept_prob=target_accept_prob,
                    dense_mass=dense_mass)

    def replication(rng_key, data):
        init_key, sample_key = jax.random.split(rng_key)

        def potential_fn(position):
            return density.potential_fn(position, data)

        state = init_state(potential_fn, start(init_key, data), sample_key, **settings)
        transition = make_transition(potential_fn, max_tree_depth=options["max_tree_depth"],
                                     energy_tolerance=options["energy_tolerance"], **settings)

        def step(state, _):
            state, _ = transition(state)
            return state, (state.z, state.diverging)

        state, _ = jax.lax.scan(step, state, None, length=num_warmup)
        _, (positions, diverging) = jax.lax.scan(step, state, None, length=num_samples)
        positions = jax.tree_util.tree_map(lambda leaf: leaf[thinning - 1 :: thinning], positions)
        values = jax.vmap(density.constrain_fn)(positions)
        draws = jax.vmap(lambda v: _statistics(v, data))(values)
        return draws, jnp.sum(diverging)

    return replication


def rank_histogram(ranks, num_draws, num_bins):
    """Counts of ``ranks`` (in ``0 .. num_draws``) in ``num_bins`` equal bins."""
    bins = np.floor(np.asarray(ranks) * num_bins / (num_draws + 1)).astype(int)
    return np.bincount(bins, minlength=num_bins)


class SBCResult(NamedTuple):
    """Ranks of the true statistics among the draws, and their chi-square tests."""

    ranks: dict
    histograms: dict
    p_values: dict
    num_draws: int
    divergences: np.ndarray
    true_alpha: np.ndarray
    seconds: float


def run_sbc(
    *, num_replications=200, num_data=50, num_components=5,
    num_warmup=NUTS.defaults["num_warmup"], num_samples=NUTS.defaults["num_samples"],
    thinning=5, num_init_steps=NUTS.defaults["num_init_steps"], num_bins=10,
    order="weight", parameterization=NUTS.defaults["parameterization"], chunk=25, seed=0,
    progress=None,
) -> SBCResult:
    """Run the SBC replications; ``progress(done, seconds)`` after each chunk."""
    priors, datasets, truth, run_key = _prior_replications(
        num_replications, num_components, num_data, seed
    )
    # One density for every data set: the identity frame, so that each
    # replication's data go into the potential as they are (the priors are
    # fixed numbers on the standardised scale already).
    density = build_log_density(
        datasets[0], num_components=num_components, priors=priors,
        parameterization=parameterization, frame=Frame.identity(),
    )
    replication = make_replication(
        density, num_warmup=num_warmup, num_samples=num_samples, thinning=thinning,
        num_init_steps=num_init_steps, options=NUTS.defaults, order=order,
    )
    run_chunk = jax.jit(lambda keys, data: jax.lax.map(lambda a: replication(*a), (keys, data)))
    keys = jax.random.split(run_key, num_replications)

    start = time.perf_counter()
    draws, divergences = [], []
    for first in range(0, num_replications, chunk):
        part = slice(first, first + chunk)
        chunk_draws, chunk_divergences = jax.block_until_ready(run_chunk(keys[part], datasets[part]))
        draws.append(chunk_draws)
        divergences.append(chunk_divergences)
        if progress is not None:
            progress(min(first + chunk, num_replications), time.perf_counter() - start)
    draws = {name: np.concatenate([d[name] for d in draws]) for name in STATISTICS}
    return _result(draws, truth, np.concatenate(divergences), num_bins, start)


def _prior_replications(num_replications, num_components, num_data, seed):
    """The fixed priors, the replications' data drawn from them, their true
    statistics, and the key of the runs."""
    priors = Priors(loc_mean=0.0, loc_scale=2.0, scale_rate=SCALE_RATE_PER_SPREAD)
    prior_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
    prior = Predictive(dpgmm, num_samples=num_replications)(
        prior_key, num_components=num_components, priors=priors, num_data=num_data
    )
    datasets = jnp.asarray(prior["obs"])
    truth = jax.vmap(_statistics)(
        {name: prior[name] for name in ("alpha", "weights", "loc", "scale")}, datasets
    )
    return priors, datasets, truth, run_key


def _result(draws, truth, divergences, num_bins, start):
    """Ranks of the truth among ``draws`` (replication, draw), binned and tested."""
    num_draws = draws["alpha"].shape[1]
    ranks, histograms, p_values = {}, {}, {}
    for name in STATISTICS:
        ranks[name] = np.sum(draws[name] < np.asarray(truth[name])[:, None], axis=1)
        histograms[name] = rank_histogram(ranks[name], num_draws, num_bins)
        p_values[name] = float(stats.chisquare(histograms[name]).pvalue)
    return SBCResult(
        ranks=ranks, histograms=histograms, p_values=p_values, num_draws=num_draws,
        divergences=np.asarray(divergences), true_alpha=np.asarray(truth["alpha"]),
        seconds=time.perf_counter() - start,
    )


#: The charts NUTS can run in, as ``dpgmm_ppl.fit`` options.
CHARTS = {
    "noncentered": {"parameterization": "noncentered", "centered_sticks": 0},
    "centered": {"parameterization": "centered"},
    "auto": {"parameterization": "noncentered", "centered_sticks": "auto"},
    # The same charts with split-merge jumps between the NUTS transitions.
    "noncentered+jumps": {"parameterization": "noncentered", "centered_sticks": 0,
                          "split_merge": 4},
    "auto+jumps": {"parameterization": "noncentered", "centered_sticks": "auto",
                   "split_merge": 4},
}


def run_sbc_fit(
    *, chart, num_replications=200, num_data=50, num_components=5,
    num_warmup=NUTS.defaults["num_warmup"], num_samples=NUTS.defaults["num_samples"],
    thinning=5, num_init_steps=NUTS.defaults["num_init_steps"], num_bins=10, seed=0,
    progress=None,
) -> SBCResult:
    """SBC of ``dpgmm_ppl.fit(..., backend="nuts")`` itself, in one of the :data:`CHARTS`.

    Each replication is one call of the public ``fit``, as a user makes it
    (standardised frame, starts, chart scouting for ``"auto"``), with the
    priors given in full so that they are the ones that made the data. The
    calls after the first reuse its compiled programs (the data of every
    replication have one shape), so this costs about the run of each fit.
    """
    import warnings

    import dpgmm_ppl

    priors, datasets, truth, run_key = _prior_replications(
        num_replications, num_components, num_data, seed
    )
    datasets = np.asarray(datasets)
    statistics = jax.jit(jax.vmap(_statistics, in_axes=(0, None)))
    keys = jax.random.split(run_key, num_replications)
    options = {
        "backend": "nuts", "num_components": num_components, "priors": priors,
        "num_warmup": num_warmup, "num_samples": num_samples,
        "num_init_steps": num_init_steps, **CHARTS[chart],
    }
    start = time.perf_counter()
    draws = {name: [] for name in STATISTICS}
    divergences = []
    for index in range(num_replications):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # divergences are counted below
            fit = dpgmm_ppl.fit(datasets[index], rng_key=keys[index], **options)
        values = {
            name: fit.samples[name][0, thinning - 1 :: thinning]
            for name in ("alpha", "weights", "loc", "scale")
        }
        for name, value in statistics(values, datasets[index]).items():
            draws[name].append(np.asarray(value))
        divergences.append(int(np.sum(fit.sample_stats["diverging"])))
        if progress is not None and (index + 1) % 25 == 0:
            progress(index + 1, time.perf_counter() - start)
    draws = {name: np.stack(value) for name, value in draws.items()}
    return _result(draws, truth, divergences, num_bins, start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-replications", type=int, default=200)
    parser.add_argument("--num-data", type=int, default=50)
    parser.add_argument("--num-components", type=int, default=5)
    parser.add_argument("--num-warmup", type=int, default=NUTS.defaults["num_warmup"])
    parser.add_argument("--num-samples", type=int, default=NUTS.defaults["num_samples"])
    parser.add_argument("--thinning", type=int, default=5)
    parser.add_argument("--num-init-steps", type=int, default=NUTS.defaults["num_init_steps"])
    parser.add_argument("--num-bins", type=int, default=10)
    parser.add_argument(
        "--order", choices=("weight", "size-biased"), default="weight",
        help="order of the components at the start: decreasing weight (the backend's "
        "choice) or a size-biased random permutation (the order of the sticks under "
        "the prior)",
    )
    parser.add_argument(
        "--parameterization", choices=("centered", "noncentered"),
        default=NUTS.defaults["parameterization"],
        help="chart of the unconstrained space (see dpgmm_ppl.reparam)",
    )
    parser.add_argument("--chunk", type=int, default=25, help="replications per compiled call")
    parser.add_argument(
        "--charts", nargs="+", choices=tuple(CHARTS), default=None,
        help="run SBC through dpgmm_ppl.fit in these charts of the sticks (every "
        "chart the backend can choose; --parameterization and --chunk then do not apply) "
        "and print one table",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.charts:
        return _main_charts(args)
    settings = {k: v for k, v in vars(args).items() if k != "charts"}

    print(
        f"SBC: {args.num_replications} replications of {args.num_data} points, "
        f"{args.num_components} components; NUTS {args.num_warmup} warmup + "
        f"{args.num_samples} draws thinned by {args.thinning}, "
        f"num_init_steps={args.num_init_steps}, order={args.order}, "
        f"parameterization={args.parameterization}, seed={args.seed}; "
        f"JAX {jax.__version__} on {jax.default_backend()}"
    )
    result = run_sbc(
        **settings, progress=lambda done, seconds: print(f"  {done} done, {seconds:.0f} s", flush=True)
    )
    divergences = result.divergences
    print(f"divergent transitions: {int(divergences.sum())} in "
          f"{int(np.count_nonzero(divergences))} of {args.num_replications} replications")
    print(f"{'statistic':<16} {'chi2 p-value':>12}   rank histogram "
          f"({args.num_bins} bins, 0 .. {result.num_draws})")
    for name in STATISTICS:
        print(f"{name:<16} {result.p_values[name]:>12.4f}   {result.histograms[name].tolist()}")
    # Where a histogram is off, which replications put it there.
    low = result.ranks["alpha"] < (result.num_draws + 1) / args.num_bins
    if low.any():
        print(f"true alpha: median {np.median(result.true_alpha):.3f} over all replications, "
              f"{np.median(result.true_alpha[low]):.3f} over the {int(low.sum())} in the lowest alpha bin")
    print(f"total {result.seconds:.0f} s")


def _main_charts(args):
    print(
        f"SBC through dpgmm_ppl.fit(backend='nuts'): {args.num_replications} replications of "
        f"{args.num_data} points, {args.num_components} components; {args.num_warmup} warmup + "
        f"{args.num_samples} draws thinned by {args.thinning}, "
        f"num_init_steps={args.num_init_steps}, seed={args.seed}; "
        f"JAX {jax.__version__} on {jax.default_backend()}"
    )
    results = {}
    for chart in args.charts:
        results[chart] = run_sbc_fit(
            chart=chart, num_replications=args.num_replications, num_data=args.num_data,
            num_components=args.num_components, num_warmup=args.num_warmup,
            num_samples=args.num_samples, thinning=args.thinning,
            num_init_steps=args.num_init_steps, num_bins=args.num_bins, seed=args.seed,
            progress=lambda done, seconds, c=chart: print(f"  {c}: {done} done, {seconds:.0f} s",
                                                           flush=True),
        )
    width = max(len(chart) for chart in results) + 2
    print(f"{'chi2 p-value':<22}" + "".join(f"{chart:>{width}}" for chart in results))
    for name in STATISTICS:
        print(f"{name:<22}" + "".join(f"{r.p_values[name]:>{width}.4f}" for r in results.values()))
    print(f"{'divergent (reps)':<22}" + "".join(
        f"{f'{int(r.divergences.sum())} ({int(np.count_nonzero(r.divergences))})':>{width}}"
        for r in results.values()))
    print(f"{'seconds':<22}" + "".join(f"{r.seconds:>{width}.0f}" for r in results.values()))
    for chart, result in results.items():
        for name in STATISTICS:
            print(f"  {chart} {name} histogram: {result.histograms[name].tolist()}")
    return results


if __name__ == "__main__":
    main()
