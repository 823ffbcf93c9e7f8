"""Cost of one MAP step against the number of points N and of components K (1-D).

One step is what ``dpgmm_ppl.fit(backend="map")`` repeats: the value and
gradient of minus the shared log joint density (``build_log_density(data,
num_components=K).log_joint_fn(position, data)``) and one ``optax.adam(0.05)``
update, the update guarded against non-finite values as MAP does
(``dpgmm_ppl.infer._common.guarded_update``). ``steps`` of them run inside
one jitted ``lax.scan``, MAP's own loop (``dpgmm_ppl.infer._optimise``),
starting from the density's ``init_position``, with the data as an argument
of the compiled function.

``baseline``
    The seed notebook's naive evaluation, from ``map_seed.py``
    (``make_notebook_loss(mixture="logsumexp")``, with all K sticks scored):
    the N x K array of Normal log densities plus log weights, ``logsumexp``
    over components, plain ``jax.value_and_grad``, the same Adam update
    (unguarded) and the same ``lax.scan``. It keeps several N x K float32
    arrays alive (1 GB each at N = 1e7, K = 25), so it stops at N = 1e6.

Sizes
    Against N in {1e3, 1e4, 1e5, 1e6, 1e7} at K = 25 (draws of that size
    from the seed mixture, ``SeedMixture.sample(1, num_data=N)``), and
    against K in {10, 25, 50, 100, 200} at the seed data's N = 19,000.
    ``--quick`` stops at N = 1e6 and K = 100.

Timing
    For each size and program: one warm-up call (compiles; reported as
    ``compile+1st``), then the median of ``--repeats`` calls, each waited for
    with ``jax.block_until_ready``, divided by ``steps`` (200 steps for small
    sizes, fewer for large ones, at least 20; ``--quick``: 100 down to 5).
    Ours' and the baseline's timed calls alternate, so that both see the
    same load on a shared machine. Float32.

Output
    A table per sweep: ms per step for ours and the baseline, the ratio
    ours / baseline (below 1.0 ours is faster) and ours' nanoseconds per
    (point, component) pair; then the least-squares slope of log(time per
    step) against log(N) over N >= 1e5 (below that the fixed cost of a step
    dominates), and against log(K) over all K. A slope of 1 is linear cost.

Run ``python benchmarks/scaling.py`` (full, a few minutes) or
``python benchmarks/scaling.py --quick`` (under two minutes).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_header, ratio, time_interleaved  # noqa: E402  (this folder)
from map_seed import make_notebook_loss, notebook_init  # noqa: E402

from dpgmm_ppl.datasets import SeedMixture, seed_mixture  # noqa: E402
from dpgmm_ppl.density import build_log_density  # noqa: E402
from dpgmm_ppl.infer._optimise import optimise  # noqa: E402

LEARNING_RATE = 0.05
FULL_N = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)
FULL_K = (10, 25, 50, 100, 200)
QUICK_N = FULL_N[:4]
QUICK_K = FULL_K[:4]
N_SWEEP_K = 25
#: The naive baseline is not run above this N (its N x K arrays).
BASELINE_MAX_N = 1_000_000
#: Only these N enter the slope against log(N).
SLOPE_MIN_N = 100_000


def num_steps_for(num_data, num_components, quick=False):
    """Enough steps for a timing well above the timer's noise: 20-200 (quick: 5-100)."""
    if quick:
        return int(np.clip(5e7 / (num_data * num_components), 5, 100))
    return int(np.clip(2e8 / (num_data * num_components), 20, 200))


def make_ours(data, num_components, num_steps):
    """``(run, position)``: ``run(position, data)`` takes ``num_steps`` MAP steps."""
    density = build_log_density(data, num_components=num_components)
    optimizer = optax.adam(LEARNING_RATE)
    loss_fn = lambda position, data: -density.log_joint_fn(position, data)

    @jax.jit
    def run(position, data):
        result = optimise(loss_fn, optimizer, position, data, num_steps=num_steps)
        return result.params, result.losses

    return run, density.init_position


def make_baseline(num_components, num_steps):
    """``(run, params)``: the notebook's loss, plain autodiff and Adam, ``num_steps`` steps."""
    optimizer = optax.adam(LEARNING_RATE)
    value_and_grad = jax.value_and_grad(
        make_notebook_loss(num_scored=num_components, mixture="logsumexp")
    )

    @jax.jit
    def run(params, data):
        def step(carry, _):
            params, opt_state = carry
            loss, grads = value_and_grad(params, data)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        carry = (params, optimizer.init(params))
        (params, _), losses = jax.lax.scan(step, carry, None, length=num_steps)
        return params, losses

    return run, notebook_init(num_components=num_components)


def measure(data, num_components, repeats, with_baseline, quick):
    """Per-step seconds (median) and warm-up seconds of ours and, if asked, the baseline.

    The two programs' timed calls alternate (``time_interleaved``), so both
    see the same load.
    """
    num_steps = num_steps_for(data.shape[0], num_components, quick)
    data = jnp.asarray(data, jnp.float32)
    run_ours, start_ours = make_ours(data, num_components, num_steps)
    calls = {"ours": lambda: run_ours(start_ours, data)}
    if with_baseline:
        run_base, start_base = make_baseline(num_components, num_steps)
        calls["base"] = lambda: run_base(start_base, data)
    timed = time_interleaved(calls, repeats=repeats)
    row = {
        "N": data.shape[0], "K": num_components, "steps": num_steps,
        "ours_finite": bool(np.all(np.isfinite(np.asarray(timed["ours"]["output"][1])))),
        "base": None, "base_first": None,
    }
    for name, result in timed.items():
        row[name] = result["median"] / num_steps
        row[f"{name}_first"] = result["first"]
    return row


def print_table(rows):
    head = (f"{'N':>10} {'K':>4} {'steps':>5} {'ours ms/step':>13} {'naive ms/step':>14} "
            f"{'ours/naive':>11} {'ours ns/(N*K)':>14} {'ours compile+1st s':>19} "
            f"{'naive compile+1st s':>20}")
    print(head)
    print("-" * len(head))
    for r in rows:
        base = "skipped" if r["base"] is None else f"{1e3 * r['base']:.3f}"
        base_first = "-" if r["base_first"] is None else f"{r['base_first']:.2f}"
        flag = "" if r["ours_finite"] else "  (ours: non-finite loss)"
        print(f"{r['N']:>10} {r['K']:>4} {r['steps']:>5} {1e3 * r['ours']:>13.3f} {base:>14} "
              f"{ratio(r['ours'], r['base']):>11} {1e9 * r['ours'] / (r['N'] * r['K']):>14.3f} "
              f"{r['ours_first']:>19.2f} {base_first:>20}{flag}")
    print()


def slope(sizes, times):
    """Least-squares slope of log(time) on log(size); None with fewer than two points."""
    if len(sizes) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def describe_slope(name, sizes, rows, key):
    picked = [(s, r[key]) for s, r in zip(sizes, rows) if r[key] is not None]
    value = slope([s for s, _ in picked], [t for _, t in picked])
    used = ", ".join(f"{s:g}" for s, _ in picked)
    return f"{name}: " + ("n/a" if value is None else f"{value:.2f}") + f"  (over {used})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N up to 1e6 and K up to 100 (under two minutes)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed calls per size after the warm-up; the median is reported")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be positive")
    sizes_n = QUICK_N if args.quick else FULL_N
    sizes_k = QUICK_K if args.quick else FULL_K

    print_header(
        "Time per MAP step (value-and-grad + Adam) against N and K, 1-D, vs the naive N x K form",
        f"mode: {'quick' if args.quick else 'full'}; median of {args.repeats} timed calls "
        "after one warm-up call",
        f"naive baseline only for N <= {BASELINE_MAX_N:g} (its N x K float32 arrays)",
    )

    print(f"Against N, K = {N_SWEEP_K} (draws from the seed mixture):")
    rows_n = []
    for num_data in sizes_n:
        data = SeedMixture.sample(jax.random.PRNGKey(1), num_data=num_data).data
        rows_n.append(
            measure(data, N_SWEEP_K, args.repeats, num_data <= BASELINE_MAX_N, args.quick)
        )
    print_table(rows_n)

    print("Against K, N = 19,000 (the seed data):")
    data = seed_mixture().data
    rows_k = [measure(data, k, args.repeats, True, args.quick) for k in sizes_k]
    print_table(rows_k)

    big = [(n, r) for n, r in zip(sizes_n, rows_n) if n >= SLOPE_MIN_N]
    print(f"Least-squares slope of log(time per step) on log(N), N >= {SLOPE_MIN_N:g}, K = {N_SWEEP_K}:")
    print("  " + describe_slope("ours ", [n for n, _ in big], [r for _, r in big], "ours"))
    print("  " + describe_slope("naive", [n for n, _ in big], [r for _, r in big], "base"))
    print("Least-squares slope of log(time per step) on log(K), N = 19,000:")
    print("  " + describe_slope("ours ", sizes_k, rows_k, "ours"))
    print("  " + describe_slope("naive", sizes_k, rows_k, "base"))
    print("  (1.0 is linear cost; ratio = ours / naive, below 1.0 ours is faster)")


if __name__ == "__main__":
    main()
