"""Minibatch SVI on ten million points: time, held-out gap to the truth, peak memory.

Draws ``--num-data`` points (default 10,000,000) from the notebook's true
4-component mixture, fits ``dpgmm_ppl.fit(..., backend="svi",
batch_size=B)`` with 25 components, and reports

- the fit's wall time (everything ``fit`` does: checks, priors, the density,
  compiling, the optimisation, the draws) and its compile/run split;
- the held-out gap: mean log density per point of 100,000 fresh points under
  the true mixture minus under the fit (target: below 0.01 nats);
- the peak resident memory added by the fit, as a multiple of the data
  array's bytes (target: about 3x at most), read from ``/proc/self/status``
  after resetting the high-water mark (Linux only), once a small fit has
  paid the per-process costs of the XLA compiler and runtime.

Baseline, in the same run: NumPyro's own subsampling idiom on the hand-written
model of ``_common.py`` (``plate("data", N, subsample_size=B)`` indexing the
whole data set on the device, ``AutoNormal``, ``Trace_ELBO``, the same Adam
schedule and steps), with its time per step and held-out gap.

Run::

    python benchmarks/svi_large.py            # 1e7 points
    python benchmarks/svi_large.py --quick    # 1e6 points, fewer baseline steps
"""

from __future__ import annotations

import argparse
import functools
import time
from typing import NamedTuple

import _common  # noqa: F401  (float32)
import jax
import numpy as np
import optax

import dpgmm_ppl
from dpgmm_ppl.datasets import SeedMixture


class HeldOut(NamedTuple):
    data: np.ndarray
    truth: np.ndarray  # log density of each point under the true mixture


def _status_kib(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_memory():
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def measure_ours(train, held_out, args):
    # A small fit first: the XLA compiler's and runtime's own memory is paid
    # once per process and does not grow with N, so it stays out of the figure.
    dpgmm_ppl.fit(
        train[:20_000], backend="svi", num_components=args.num_components, num_steps=50,
        batch_size=min(args.batch_size, 20_000), num_samples=args.num_samples, rng_key=0,
    )
    resettable = _reset_peak_memory()
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    fit = dpgmm_ppl.fit(
        train, backend="svi", num_components=args.num_components, num_steps=args.num_steps,
        batch_size=args.batch_size, num_samples=args.num_samples, rng_key=0,
    )
    wall = time.perf_counter() - start
    peak = _status_kib("VmHWM") if resettable else None
    gap = float(np.mean(held_out.truth) - np.mean(fit.log_predictive_density(held_out.data)))
    added = None if peak is None or before is None else (peak - before) * 1024
    return {"wall": wall, "timing": fit.timing, "gap": gap, "added_bytes": added}


def measure_numpyro(train, held_out, args):
    """NumPyro's plate subsampling + AutoNormal on the hand-written model."""
    import jax.numpy as jnp
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoNormal

    model = functools.partial(
        _common.handwritten_dpgmm, num_components=args.num_components,
        priors=_common.default_priors(train), subsample_size=args.batch_size,
    )

    steps = args.baseline_steps
    optimizer = optax.adam(optax.cosine_decay_schedule(0.03, steps, alpha=0.03))
    guide = AutoNormal(model)
    svi = SVI(model, guide, optimizer, Trace_ELBO())
    data = jnp.asarray(train)
    start = time.perf_counter()
    state = svi.init(jax.random.PRNGKey(0), data)

    @jax.jit
    def run(state):
        return jax.lax.scan(lambda s, _: svi.update(s, data), state, None, length=steps)

    compiled = run.lower(state).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    state, _ = jax.block_until_ready(compiled(state))
    run_seconds = time.perf_counter() - start
    params = svi.get_params(state)
    draws = guide.sample_posterior(jax.random.PRNGKey(1), params, sample_shape=(args.num_samples,))
    samples = {name: np.asarray(draws[name])[None] for name in ("weights", "loc", "scale")}
    from jax.scipy.special import logsumexp

    from dpgmm_ppl.mixtures import mixture_log_density

    values = mixture_log_density(samples, held_out.data).reshape(-1, held_out.data.shape[0])
    predictive = np.asarray(logsumexp(values, axis=0) - np.log(values.shape[0]))
    gap = float(np.mean(held_out.truth) - np.mean(predictive))
    return {"compile": compile_seconds, "run": run_seconds, "per_step": run_seconds / steps,
            "gap": gap}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-data", type=float, default=1e7)
    parser.add_argument("--num-components", type=int, default=25)
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--baseline-steps", type=int, default=None,
                        help="steps of the NumPyro baseline (default: as ours; 0 skips it)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.num_data = min(args.num_data, 1e6)
    if args.baseline_steps is None:
        args.baseline_steps = 300 if args.quick else args.num_steps
    num_data = int(args.num_data)
    _common.print_header(
        "Minibatch SVI on the seed mixture",
        f"N = {num_data:,}, K = {args.num_components}, {args.num_steps} steps, "
        f"batch {args.batch_size}, {args.num_samples} draws",
    )
    train = SeedMixture.sample(1, num_data=num_data).data
    sample = SeedMixture.sample(2, num_data=100_000)
    held_out = HeldOut(sample.data, sample.log_density(sample.data))

    ours = measure_ours(train, held_out, args)
    timing = ours["timing"]
    print(f"dpgmm_ppl  fit wall {ours['wall']:.1f} s (compile {timing['compile_seconds']:.1f} s, "
          f"run {timing['run_seconds']:.1f} s, {1e3 * timing['run_seconds'] / args.num_steps:.2f} "
          f"ms/step); held-out gap {ours['gap']:.5f} nats")
    if ours["added_bytes"] is not None:
        print(f"           peak memory added by fit: {ours['added_bytes'] / 2**20:.0f} MiB = "
              f"{ours['added_bytes'] / train.nbytes:.2f} x the data array "
              f"({train.nbytes / 2**20:.0f} MiB)")
    targets = ours["gap"] < 0.01 and ours["wall"] < 120
    print(f"           target (gap < 0.01 nats, under 2 minutes): {'met' if targets else 'NOT met'}")
    if args.baseline_steps:
        base = measure_numpyro(train, held_out, args)
        print(f"numpyro    plate subsampling + AutoNormal, {args.baseline_steps} steps: compile "
              f"{base['compile']:.1f} s, run {base['run']:.1f} s, {1e3 * base['per_step']:.2f} "
              f"ms/step; held-out gap {base['gap']:.5f} nats")
        ours_step = timing["run_seconds"] / args.num_steps
        print(f"ratio (time per step, ours / numpyro): {_common.ratio(ours_step, base['per_step'])}")


if __name__ == "__main__":
    main()
