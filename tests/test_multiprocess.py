"""Every backend on JAX's multi-process runtime: 2 processes x 2 CPU devices
on localhost (``python -m dpgmm_ppl.launch``), each given only its part of
the rows (80 and 70 of 150, so each block is padded differently), against
one process with all the rows, run at the same time.

Tolerance: the SPMD program sums the per-point terms per device, then
across devices and processes, in another order than one device does, so the
results agree to float32 rounding carried through the steps, not bit for bit:
``|multi - single| <= 2e-4 * (1 + |single|)`` after 60 optimiser steps
(measured: at most 2e-5), and for the draws of a short NUTS chain (5 + 15
iterations) too: a chain amplifies rounding until one U-turn or acceptance
decision flips, after which the two part (measured: after 30 warmup
iterations the adapted step sizes differed by 1e-2; over 3 + 10 the draws
agreed to 3e-6). The two processes must agree bit for bit, and so must the
priors and the frame.
"""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow

_COMMON = """
import json, os, sys, warnings
import numpy as np
import jax
import dpgmm_ppl
out = sys.argv[1]
rng = np.random.default_rng(0)
data = np.concatenate([
    rng.normal([-3.0, 0.0], [1.0, 0.5], (60, 2)),
    rng.normal([2.0, 2.0], [0.5, 1.0], (50, 2)),
    rng.normal([0.0, -3.0], [0.7, 0.7], (40, 2)),
]).astype(np.float32)[rng.permutation(150)]
BACKENDS = {
    "map": dict(backend="map", num_steps=60, history_every=60, objective="constrained"),
    "svi": dict(backend="svi", num_steps=60, num_samples=10, history_every=60),
    "minibatch": dict(backend="svi", num_steps=60, num_samples=10, history_every=60,
                      batch_size=32),
    # Plain leapfrog steps: five warmup steps leave the step size unadapted, so
    # the halving rule tests hundreds of steps against its tolerance, and with
    # it the sum over two processes, rounded otherwise, gave other draws from
    # the first one on (alpha 2.0e-4 against 2.9e-4).
    "nuts": dict(backend="nuts", num_warmup=5, num_samples=15, num_init_steps=0,
                 max_tree_depth=4, dense_mass=False, chain_method="sequential",
                 energy_tolerance=None),
}
warnings.simplefilter("ignore")

def record(name, fit):
    values = {f"samples/{k}": v for k, v in fit.samples.items()}
    values.update({f"stats/{k}": v for k, v in fit.sample_stats.items()})
    if fit.losses is not None:
        values["losses"] = fit.losses
    return {f"{name}/{k}": np.asarray(v) for k, v in values.items()}

def run_all(data):
    results = {}
    for name, options in BACKENDS.items():
        fit = dpgmm_ppl.fit(data, num_components=3, num_chains=1, rng_key=0, **options)
        results.update(record(name, fit))
        print("timing", name, {k: round(v, 1) for k, v in fit.timing.items()}, flush=True)
    return fit, results
"""

_SPREAD = _COMMON + """
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.sharding import data_mesh, process_local_data
me = jax.process_index()
assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
mine = data[:80] if me == 0 else data[80:]
spread = process_local_data(mine, data_mesh())
assert not spread.is_fully_addressable
density = build_log_density(spread, num_components=3)
results = {"priors/" + k: np.asarray(getattr(density.priors, k))
           for k in ("loc_mean", "loc_scale", "scale_rate")}
results["frame/center"], results["frame/unit"] = density.frame
results["data_rows"] = np.asarray([density.data.shape[0], density.num_data])
errors = []
for bad in (
    lambda: dpgmm_ppl.fit(spread, mesh=data_mesh(jax.local_devices())),
    lambda: dpgmm_ppl.fit(mine, mesh=data_mesh()),
    lambda: dpgmm_ppl.fit(jax.make_array_from_process_local_data(
        jax.sharding.NamedSharding(data_mesh(), jax.sharding.PartitionSpec()), data), num_steps=1),
    lambda: process_local_data(spread, data_mesh()),
):
    try:
        bad()
        errors.append("no error")
    except (TypeError, ValueError) as error:
        errors.append(f"{type(error).__name__}: {error}")
results["errors"] = np.asarray(errors)
fit, more = run_all(spread)
results.update(more)
results["nuts/lpd"] = fit.log_predictive_density(np.array([[0.0, 0.0], [-3.0, 0.0]]))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    groups = fit.to_arviz().groups  # a method on ArviZ 0.x, a tuple on 1.x
    groups = [name.strip("/") for name in (groups() if callable(groups) else groups)]
results["arviz/groups"] = np.asarray(sorted(groups))
results["arviz/warned"] = np.asarray(any("spread over processes" in str(w.message) for w in caught))
fit.save(os.path.join(out, "fit.nc"))
np.savez(os.path.join(out, f"spread-{me}.npz"), **results)
"""

_WHOLE = _COMMON + """
from dpgmm_ppl.density import build_log_density
density = build_log_density(data, num_components=3)
results = {"priors/" + k: np.asarray(getattr(density.priors, k))
           for k in ("loc_mean", "loc_scale", "scale_rate")}
results["frame/center"], results["frame/unit"] = density.frame
fit, more = run_all(data)
results.update(more)
results["nuts/lpd"] = fit.log_predictive_density(np.array([[0.0, 0.0], [-3.0, 0.0]]))
np.savez(os.path.join(out, "whole.npz"), **results)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiprocess")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    start = time.perf_counter()
    # The one-process reference runs alongside the two processes.
    whole = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WHOLE), str(out)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    spread = subprocess.run(
        [sys.executable, "-m", "dpgmm_ppl.launch", "--num-processes", "2",
         "--devices-per-process", "2", "--timeout", "500", "--",
         sys.executable, "-c", textwrap.dedent(_SPREAD), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    whole_output = whole.communicate(timeout=600)[0]
    assert spread.returncode == 0, spread.stdout[-4000:] + spread.stderr[-2000:]
    assert whole.returncode == 0, whole_output[-4000:]
    load = lambda name: dict(np.load(out / name))
    return {
        "whole": load("whole.npz"), "spread": [load(f"spread-{i}.npz") for i in range(2)],
        "out": out, "seconds": time.perf_counter() - start,
    }


def test_every_process_ends_with_the_same_fit_bit_for_bit(runs):
    first, second = runs["spread"]
    assert sorted(first) == sorted(second)
    for name in set(first) - {"errors"}:  # the errors name each process's rows
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


def test_priors_and_frame_from_split_rows_equal_those_from_all_rows(runs):
    spread, whole = runs["spread"][0], runs["whole"]
    for name in ("priors/loc_mean", "priors/loc_scale", "priors/scale_rate",
                 "frame/center", "frame/unit"):
        np.testing.assert_array_equal(spread[name], whole[name], err_msg=name)
    # Blocks of 80 rows (padded from 80 and 70), 150 real rows.
    assert spread["data_rows"].tolist() == [160, 150]


@pytest.mark.parametrize("backend", ["map", "svi", "minibatch", "nuts"])
def test_every_backend_matches_one_process_with_all_rows(runs, backend):
    spread, whole = runs["spread"][0], runs["whole"]
    names = [name for name in whole if name.startswith(backend + "/")]
    assert any(name.endswith("/loc") for name in names)
    for name in names:
        single = whole[name].astype(np.float64)
        multi = spread[name].astype(np.float64)
        np.testing.assert_array_less(np.abs(multi - single), 2e-4 * (1 + np.abs(single)),
                                     err_msg=name)


def test_bad_global_inputs_get_one_clear_error(runs):
    errors = runs["spread"][0]["errors"].tolist()
    assert errors[0].startswith("ValueError: mesh must be the mesh of data"), errors[0]
    assert errors[1].startswith("ValueError: data must be a global jax.Array"), errors[1]
    assert errors[2].startswith("ValueError: data must be of shape (N,) or (N, D) with its rows "
                                "split"), errors[2]
    assert errors[3].startswith("TypeError: rows must be this process's own rows"), errors[3]


def test_only_process_zero_writes_and_the_fit_needs_no_global_data(runs):
    import dpgmm_ppl

    spread = runs["spread"][0]
    assert spread["arviz/warned"]
    groups = spread["arviz/groups"].tolist()
    assert "posterior" in groups and "sample_stats" in groups, groups
    assert "log_likelihood" not in groups and "observed_data" not in groups, groups
    loaded = dpgmm_ppl.load(runs["out"] / "fit.nc")
    assert loaded.data.shape == (150, 2) and np.isnan(loaded.data).all()
    np.testing.assert_array_equal(loaded.samples["loc"], spread["nuts/samples/loc"])


def test_launcher_environment_and_bad_arguments():
    from dpgmm_ppl._distributed import initialize_distributed
    from dpgmm_ppl.launch import launch, process_environment

    env = process_environment(1, num_processes=2, devices_per_process=3, port=1234,
                              environ={"XLA_FLAGS": "--xla_force_host_platform_device_count=8 -x"})
    assert env["XLA_FLAGS"] == "-x --xla_force_host_platform_device_count=3"
    names = ("DPGMM_PPL_COORDINATOR", "DPGMM_PPL_NUM_PROCESSES", "DPGMM_PPL_PROCESS_ID",
             "JAX_PLATFORMS")
    assert [env[name] for name in names] == ["127.0.0.1:1234", "2", "1", "cpu"]
    assert initialize_distributed({}) is False
    with pytest.raises(ValueError, match="DPGMM_PPL_NUM_PROCESSES and DPGMM_PPL_PROCESS_ID must"):
        initialize_distributed({"DPGMM_PPL_COORDINATOR": "127.0.0.1:1",
                                "DPGMM_PPL_PROCESS_ID": "0"})
    with pytest.raises(ValueError, match="num_processes must be a positive int, got 0"):
        launch(["true"], num_processes=0)
    with pytest.raises(ValueError, match="command must name a program"):
        launch([])
    assert launch([sys.executable, "-c", "import sys; sys.exit(3)"], num_processes=2) == 3
