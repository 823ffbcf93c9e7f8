"""Joining the other processes of a multi-process JAX run, as the environment asks.

:mod:`dpgmm_ppl` calls :func:`initialize_distributed` when it is imported;
:mod:`dpgmm_ppl.launch` sets the variables it reads.
"""

from __future__ import annotations

import os

import jax

__all__ = ["initialize_distributed"]

#: The environment variables that :func:`initialize_distributed` reads
#: (:mod:`dpgmm_ppl.launch` sets the first three).
COORDINATOR_VARIABLE = "DPGMM_PPL_COORDINATOR"
NUM_PROCESSES_VARIABLE = "DPGMM_PPL_NUM_PROCESSES"
PROCESS_ID_VARIABLE = "DPGMM_PPL_PROCESS_ID"
AUTO_VARIABLE = "DPGMM_PPL_DISTRIBUTED"


def initialize_distributed(environ=None) -> bool:
    """Call :func:`jax.distributed.initialize` as the environment asks; ``True`` if it did.

    With ``DPGMM_PPL_COORDINATOR``, ``DPGMM_PPL_NUM_PROCESSES`` and
    ``DPGMM_PPL_PROCESS_ID`` set (by :mod:`dpgmm_ppl.launch`), with those; with
    ``DPGMM_PPL_DISTRIBUTED=1``, with no arguments, for JAX to find them on a
    managed cluster. On the CPU, cross-process collectives go through Gloo.
    Nothing is done when neither is set, or when JAX's distributed runtime is
    already up. :mod:`dpgmm_ppl` calls it when it is imported.

    Returns
    -------
    bool
    """
    environ = os.environ if environ is None else environ
    explicit = COORDINATOR_VARIABLE in environ
    if not explicit and environ.get(AUTO_VARIABLE, "0") in ("", "0"):
        return False
    if jax.distributed.is_initialized():
        return False
    # Collectives between the CPU devices of several processes (unused elsewhere).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        try:
            num_processes = int(environ[NUM_PROCESSES_VARIABLE])
            process_id = int(environ[PROCESS_ID_VARIABLE])
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"{COORDINATOR_VARIABLE} is set, so {NUM_PROCESSES_VARIABLE} and "
                f"{PROCESS_ID_VARIABLE} must be integers; got "
                f"{environ.get(NUM_PROCESSES_VARIABLE)!r} and {environ.get(PROCESS_ID_VARIABLE)!r}"
            ) from error
        jax.distributed.initialize(
            coordinator_address=environ[COORDINATOR_VARIABLE],
            num_processes=num_processes,
            process_id=process_id,
        )
    else:
        jax.distributed.initialize()
    return True
