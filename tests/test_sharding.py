"""The data plate sharded across 4 CPU devices: the same log-density, the same
MAP fit, an SPMD program that reduces across devices, and NUTS chains spread
across devices. JAX fixes its device count when it starts, so each check runs
in a fresh Python with ``--xla_force_host_platform_device_count=4``."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dpgmm_ppl.sharding import data_mesh, shard_data

_PRELUDE = """
import json, jax, numpy as np
import dpgmm_ppl
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.sharding import data_mesh
assert len(jax.devices()) == 4, jax.devices()
rng = np.random.default_rng(0)
# 1,001 rows: not a multiple of 4, so the last shard carries 3 padding rows.
data = np.concatenate([rng.normal(-3.0, 1.0, 501), rng.normal(2.0, 0.5, 500)]).astype(np.float32)
mesh = data_mesh()
out = {}
"""


def _run_on_four_devices(body):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_ENABLE_X64"] = "0"
    script = _PRELUDE + textwrap.dedent(body) + "\nprint('RESULT ' + json.dumps(out))\n"
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = [row for row in done.stdout.splitlines() if row.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def density_results():
    return _run_on_four_devices("""
        plain = build_log_density(data, num_components=5)
        sharded = build_log_density(data, num_components=5, mesh=mesh)
        out["shards"] = len(sharded.data.sharding.device_set)
        out["rows"] = [sharded.data.shape[0], sharded.num_data]
        out["shard_rows"] = sorted(s.data.shape[0] for s in sharded.data.addressable_shards)
        hlo = jax.jit(sharded.potential_fn).lower(sharded.init_position, sharded.data).compile().as_text()
        out["all_reduce"] = "all-reduce" in hlo
        rows = []
        for i in range(5):
            position = jax.tree_util.tree_map(
                lambda leaf: leaf + 0.3 * rng.normal(size=np.shape(leaf)).astype(np.float32),
                plain.init_position)
            grad_plain = jax.grad(plain.potential_fn)(position, plain.data)
            grad_sharded = jax.grad(sharded.potential_fn)(position, sharded.data)
            # The same gradient summed in other row orders: float32 rounding alone.
            reordered = [jax.grad(plain.potential_fn)(position, plain.data[order])
                         for order in (rng.permutation(1001) for _ in range(3))]
            rows.append({
                "grad_reordered": [np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(g)]).tolist()
                                   for g in reordered],
                "potential": [float(plain.potential_fn(position, plain.data)),
                              float(sharded.potential_fn(position, sharded.data))],
                "log_joint": [float(plain.log_joint_fn(position, plain.data)),
                              float(sharded.log_joint_fn(position, sharded.data))],
                "grad": [np.concatenate([np.ravel(v) for v in jax.tree_util.tree_leaves(g)]).tolist()
                         for g in (grad_plain, grad_sharded)],
            })
        out["rows_eval"] = rows
    """)


def test_the_data_are_split_into_four_even_shards_with_padding(density_results):
    assert density_results["shards"] == 4
    assert density_results["rows"] == [1004, 1001]
    assert density_results["shard_rows"] == [251, 251, 251, 251]
    # XLA partitions the per-point terms and sums them across devices.
    assert density_results["all_reduce"]


def test_sharded_and_unsharded_log_densities_agree_to_float32_rounding(density_results):
    """Values and gradients agree to float32 rounding; without the padding
    mask the 3 extra rows would move the potential by several nats.

    The sharded program sums the per-point terms in another order (per
    shard, then across shards) and XLA may fuse it differently, so its
    gradient may differ from the unsharded one by float32 rounding, no
    more: measured against the unsharded gradient of the same rows in three
    other orders, it must stay within 4 times their largest difference."""
    for row in density_results["rows_eval"]:
        for name in ("potential", "log_joint"):
            plain, sharded = row[name]
            assert abs(plain - sharded) <= 1e-5 * abs(plain) + 1e-3, (name, plain, sharded)
        plain, sharded = (np.asarray(g) for g in row["grad"])
        rounding = max(np.abs(np.asarray(g) - plain).max() for g in row["grad_reordered"])
        assert rounding < 1e-3 * np.abs(plain).max()  # the reorderings are rounding, not a bug
        assert np.abs(sharded - plain).max() <= 4 * rounding + 1e-4, (sharded - plain, rounding)


def test_a_sharded_map_fit_matches_the_unsharded_one():
    out = _run_on_four_devices("""
        options = dict(num_components=4, num_steps=600, num_chains=2, rng_key=0)
        plain = dpgmm_ppl.fit(data, **options)
        sharded = dpgmm_ppl.fit(data, mesh=mesh, **options)
        out["data_rows"] = sharded.data.shape[0]
        for name in ("weights", "loc", "scale"):
            out[name] = [plain.samples[name].tolist(), sharded.samples[name].tolist()]
        out["log_joint"] = [plain.sample_stats["log_joint"].tolist(),
                            sharded.sample_stats["log_joint"].tolist()]
    """)
    assert out["data_rows"] == 1001  # the fit keeps the data without padding
    plain, sharded = (np.asarray(v) for v in out["log_joint"])
    # Each restart ends with a spare component of weight about 1e-4, whose
    # location the data barely pin down: the sharded sum's other rounding
    # moves it along that nearly flat direction over 600 steps (measured:
    # 0.02 nats on jax 0.10, 0.28 on jax 0.12, of 1,740).
    np.testing.assert_allclose(sharded, plain, rtol=2e-4)
    # The two clusters hold 501 and 500 points, so which one comes first
    # (MAP puts the components in order of weight) is up to that rounding
    # too: the components that hold the data are compared in order of location.
    weights, loc, scale = (np.asarray(out[name]) for name in ("weights", "loc", "scale"))
    for chain in range(weights.shape[1]):
        held = [weights[fit, chain, 0] > 0.01 for fit in range(2)]
        order = [np.argsort(loc[fit, chain, 0][held[fit]]) for fit in range(2)]
        for name, value in (("weights", weights), ("loc", loc), ("scale", scale)):
            plain, sharded = (value[fit, chain, 0][held[fit]][order[fit]] for fit in range(2))
            np.testing.assert_allclose(sharded, plain, atol=2e-3, err_msg=f"{name} {chain}")


@pytest.mark.slow
def test_nuts_spreads_chains_across_devices_or_shares_sharded_data():
    out = _run_on_four_devices("""
        options = dict(backend="nuts", num_components=2, num_chains=4, num_warmup=100,
                       num_samples=100, num_init_steps=200, rng_key=1)
        spread = dpgmm_ppl.fit(data, **options)
        shared = dpgmm_ppl.fit(data, mesh=mesh, **options)
        # Label-invariant within each chain: two clusters of nearly equal weight
        # can be in either order in a chain, as each chain is sorted by weight.
        order = [np.argsort(f.samples["loc"].mean(axis=1), axis=1) for f in (spread, shared)]
        out["means"] = [np.take_along_axis(f.samples["loc"].mean(axis=1), o, 1).mean(0).tolist()
                        for f, o in zip((spread, shared), order)]
        out["sds"] = [np.take_along_axis(f.samples["loc"].std(axis=1), o, 1).mean(0).tolist()
                      for f, o in zip((spread, shared), order)]
        try:
            dpgmm_ppl.fit(data, mesh=mesh, chain_method="parallel", **options)
        except ValueError as error:
            out["error"] = str(error)
    """)
    # Two well-separated clusters: both runs find them, within Monte-Carlo error.
    spread, shared = (np.asarray(v) for v in out["means"])
    sd = np.asarray(out["sds"][0])
    np.testing.assert_allclose(spread, [-3.0, 2.0], atol=0.2)
    assert np.all(np.abs(spread - shared) < 6 * sd / np.sqrt(100) + 1e-3)
    assert "chain_method='parallel'" in out["error"]


def test_shard_data_on_one_device_and_bad_meshes():
    """In this process (one CPU device): no padding, and clear errors."""
    mesh = data_mesh()
    sharded, count = shard_data(np.arange(7.0, dtype=np.float32), mesh)
    assert count == 7 and sharded.shape == (7,)
    np.testing.assert_array_equal(np.asarray(sharded), np.arange(7.0))
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        shard_data(np.arange(3.0), "cpu")
    import jax
    from jax.sharding import Mesh

    with pytest.raises(ValueError, match="axis named 'data'"):
        shard_data(np.arange(3.0), Mesh(np.asarray(jax.devices()), ("batch",)))
    with pytest.raises(ValueError, match="devices must name at least one device"):
        data_mesh([])


def test_fit_refuses_a_mesh_with_minibatches_and_a_non_mesh():
    import dpgmm_ppl

    x = np.linspace(0.0, 1.0, 50)
    with pytest.raises(ValueError, match="mesh and batch_size exclude each other"):
        dpgmm_ppl.fit(x, backend="svi", batch_size=10, mesh=data_mesh())
    with pytest.raises(TypeError, match="mesh must be"):
        dpgmm_ppl.fit(x, mesh=4)
