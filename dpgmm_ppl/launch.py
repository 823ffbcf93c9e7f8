"""Start the processes of a multi-process JAX program on this machine.

``python -m dpgmm_ppl.launch --num-processes 2 --devices-per-process 2 -- COMMAND ...``
runs ``COMMAND`` (``dpgmm-ppl fit ...`` or ``python script.py``) in
``--num-processes`` processes on localhost, each with
``--devices-per-process`` CPU devices, and with the environment variables
that :func:`initialize` reads (it runs when :mod:`dpgmm_ppl` is imported,
before anything else touches JAX):

``DPGMM_PPL_COORDINATOR``
    ``host:port`` of process 0, which coordinates the others.
``DPGMM_PPL_NUM_PROCESSES``, ``DPGMM_PPL_PROCESS_ID``
    How many processes there are, and which one this is.

It is the same program that runs on a cluster, where the cluster's launcher
(``srun`` on SLURM, ``mpirun``, a Kubernetes job, ...) starts one process per
host and :func:`jax.distributed.initialize` finds the coordinator, the
number of processes and the process's id by itself (set
``DPGMM_PPL_DISTRIBUTED=1`` so that :mod:`dpgmm_ppl` calls it with no
arguments). The launcher waits for every process, prints each one's output
prefixed by its id, and exits with the first non-zero status (stopping the
others when one fails).

Examples
--------
>>> status = launch(["python", "fit.py"], num_processes=2)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

__all__ = ["initialize", "launch", "main"]

from dpgmm_ppl._distributed import (
    COORDINATOR_VARIABLE as _COORDINATOR,
)
from dpgmm_ppl._distributed import (
    NUM_PROCESSES_VARIABLE as _NUM_PROCESSES,
)
from dpgmm_ppl._distributed import (
    PROCESS_ID_VARIABLE as _PROCESS_ID,
)
from dpgmm_ppl._distributed import (
    initialize_distributed as initialize,
)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_environment(
    process_id: int,
    *,
    num_processes: int,
    devices_per_process: int,
    port: int,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of process ``process_id`` (see the module notes)."""
    env = dict(os.environ if environ is None else environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
    env.update({
        "XLA_FLAGS": " ".join(flags),
        "JAX_PLATFORMS": "cpu",
        _COORDINATOR: f"127.0.0.1:{port}",
        _NUM_PROCESSES: str(num_processes),
        _PROCESS_ID: str(process_id),
    })
    return env


def _relay(stream, prefix, out):
    for line in iter(stream.readline, ""):
        out.write(f"{prefix}{line}")
        out.flush()
    stream.close()


def launch(
    command: Sequence[str],
    *,
    num_processes: int = 2,
    devices_per_process: int = 1,
    port: int | None = None,
    timeout: float | None = None,
) -> int:
    """Run ``command`` in ``num_processes`` processes on localhost; the first non-zero status.

    Parameters
    ----------
    command : sequence of str
        The program and its arguments, the same for every process.
    num_processes : int
        Processes to start.
    devices_per_process : int
        CPU devices that XLA makes in each process.
    port : int, optional
        The coordinator's port on 127.0.0.1; a free one by default.
    timeout : float, optional
        Seconds to wait before stopping every process (status 124).

    Returns
    -------
    int
        0 when every process exits with 0.
    """
    for name, value in (("num_processes", num_processes),
                        ("devices_per_process", devices_per_process)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not command:
        raise ValueError("command must name a program to run, got an empty command")
    port = _free_port() if port is None else port
    processes, relays = [], []
    for process_id in range(num_processes):
        env = process_environment(process_id, num_processes=num_processes,
                                  devices_per_process=devices_per_process, port=port)
        process = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        relay = threading.Thread(target=_relay, args=(process.stdout, f"[{process_id}] ",
                                                      sys.stdout), daemon=True)
        relay.start()
        relays.append(relay)
    status = _wait(processes, timeout)
    for relay in relays:
        relay.join(timeout=5)
    return status


def _wait(processes, timeout):
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    status = 0
    while any(p.poll() is None for p in processes):
        failed = [p.returncode for p in processes if p.returncode not in (None, 0)]
        late = deadline is not None and time.monotonic() > deadline
        if failed or late:
            status = failed[0] if failed else 124
            for p in processes:
                if p.poll() is None:
                    p.kill()
            break
        time.sleep(0.05)
    for p in processes:
        p.wait()
        if status == 0 and p.returncode:
            status = p.returncode
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dpgmm_ppl.launch",
        description="Run a command in several JAX processes on this machine "
                    "(jax.distributed over 127.0.0.1, CPU devices).",
    )
    parser.add_argument("--num-processes", type=int, default=2)
    parser.add_argument("--devices-per-process", type=int, default=1)
    parser.add_argument("--port", type=int, default=None,
                        help="the coordinator's port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before giving up")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="after --: the command, e.g. dpgmm-ppl fit data.csv ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    try:
        return launch(command, num_processes=args.num_processes,
                      devices_per_process=args.devices_per_process, port=args.port,
                      timeout=args.timeout)
    except ValueError as error:
        parser.error(str(error))


if __name__ == "__main__":
    sys.exit(main())
