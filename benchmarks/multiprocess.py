"""Minibatch SVI with the rows spread over 1, 2 and 4 processes of one CPU device each.

Starts ``python -m dpgmm_ppl.launch --num-processes P --devices-per-process 1``
for each P and, in each process, makes only that process's share of
``--num-points`` points (the same data set for every P: fixed blocks of rows,
each drawn from its own seed), builds the global array with
:func:`dpgmm_ppl.sharding.process_local_data` and runs
``dpgmm_ppl.fit(..., backend="svi", batch_size=4096)``. It prints, per P,
the fit's wall time (slowest process), its ratio to the one-process run of
the same invocation, each process's peak resident memory (``ru_maxrss``)
and what the fit added to it (the high-water mark, reset before the fit,
minus the resident memory then; Linux; a small fit before it has paid the
compiler's and runtime's own memory), next to the bytes of the rows it
holds. With one process the data are fully addressable and ``fit`` takes
its one-host path.

On a machine with fewer cores than processes the time cannot fall; what it
checks is that the fits run and agree (the loss of the last step is printed)
and that no process holds more than its rows.

Run::

    python benchmarks/multiprocess.py                      # 1e7 points
    python benchmarks/multiprocess.py --num-points 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

#: Rows drawn from one seed: the data set is the same whatever the processes.
BLOCK_ROWS = 1 << 18


def _rows(start, stop, dim):
    """Rows ``start:stop`` of the data set: four clusters, fixed per block of rows."""
    import numpy as np

    centers = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, -4.0]])[:, :dim]
    parts = []
    for block in range(start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)):
        rng = np.random.default_rng([7, block])
        first = block * BLOCK_ROWS
        labels = rng.integers(0, 4, BLOCK_ROWS)
        points = (centers[labels] + rng.normal(size=(BLOCK_ROWS, dim))).astype(np.float32)
        parts.append(points[max(start, first) - first: min(stop, first + BLOCK_ROWS) - first])
    return np.concatenate(parts)


def _status_mib(field):
    """``VmRSS`` or ``VmHWM`` of this process from ``/proc/self/status``, in MiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak():
    """Start a new high-water mark of resident memory (Linux; ignored elsewhere)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def worker(args):
    import jax
    import numpy as np

    import dpgmm_ppl
    from dpgmm_ppl.sharding import data_mesh, process_local_data

    count, me = jax.process_count(), jax.process_index()
    bounds = np.linspace(0, args.num_points, count + 1).astype(np.int64)
    mine = _rows(int(bounds[me]), int(bounds[me + 1]), args.dim)
    data = process_local_data(mine, data_mesh())
    # A small fit first pays the per-process costs of the XLA compiler and
    # runtime, so that what the timed fit adds is what its data cost.
    dpgmm_ppl.fit(process_local_data(mine[:20_000], data_mesh()), backend="svi",
                  num_components=args.num_components, batch_size=args.batch_size,
                  num_steps=10, num_samples=10, rng_key=1, compilation_cache=False)
    _reset_peak()
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    fit = dpgmm_ppl.fit(
        data, backend="svi", num_components=args.num_components, batch_size=args.batch_size,
        num_steps=args.num_steps, num_samples=100, rng_key=0, compilation_cache=False,
    )
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps({
        "process": me, "seconds": seconds, "peak_rss_mib": peak_mib,
        "added_mib": _status_mib("VmHWM") - before,
        "rows_mib": mine.nbytes / 2**20, "last_loss": float(fit.losses[0, -1]),
        "compile_seconds": fit.timing["compile_seconds"],
    }), flush=True)


def run(num_processes, args):
    command = [
        sys.executable, "-m", "dpgmm_ppl.launch", "--num-processes", str(num_processes),
        "--devices-per-process", "1", "--", sys.executable, os.path.abspath(__file__),
        "--worker", "--num-points", str(args.num_points), "--num-steps", str(args.num_steps),
        "--batch-size", str(args.batch_size), "--num-components", str(args.num_components),
        "--dim", str(args.dim),
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_ENABLE_X64="0")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    lines = [line.split("RESULT ", 1)[1] for line in done.stdout.splitlines() if "RESULT " in line]
    return sorted((json.loads(line) for line in lines), key=lambda r: r["process"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-points", type=int, default=10_000_000)
    parser.add_argument("--num-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--num-components", type=int, default=25)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import dpgmm_ppl  # noqa: F401  (joins the other processes first)

        return worker(args)
    print(f"minibatch SVI, {args.num_points:,} points x {args.dim}, K={args.num_components}, "
          f"batch {args.batch_size}, {args.num_steps} steps; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    print("processes | wall s (slowest) | ratio to 1 | compile s | last loss | "
          "peak RSS MiB per process | added by fit MiB | rows MiB per process")
    baseline = None
    for count in args.processes:
        results = run(count, args)
        wall = max(r["seconds"] for r in results)
        baseline = wall if baseline is None else baseline
        print(f"{count} | {wall:.1f} | {wall / baseline:.2f} | "
              f"{max(r['compile_seconds'] for r in results):.1f} | "
              f"{results[0]['last_loss']:.1f} | "
              f"{', '.join('%.0f' % r['peak_rss_mib'] for r in results)} | "
              f"{', '.join('%.0f' % r['added_mib'] for r in results)} | "
              f"{', '.join('%.1f' % r['rows_mib'] for r in results)}", flush=True)


if __name__ == "__main__":
    main()
