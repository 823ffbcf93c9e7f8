"""Compile once, fit many: what a second fit of the same shape reuses.

Every compiled program takes the data, the priors, the frame and the keys as
arguments (dpgmm_ppl/density.py, infer/_common.py), and the data are padded
to a bucket of rows. What is counted here is what JAX reports through its
monitoring events (a trace of a function into a jaxpr, an XLA compilation),
never how long anything took; the timings are in benchmarks/compile_reuse.py.
"""

from __future__ import annotations

import collections

import jax
import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl import api, datasets
from dpgmm_ppl import density as density_module
from dpgmm_ppl.density import bucket_size, build_log_density
from dpgmm_ppl.infer import _common
from dpgmm_ppl.infer.map import MAP
from dpgmm_ppl.infer.svi import SVI

TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

OPTIONS = {
    "map": {"num_steps": 200, "history_every": 50},
    "svi": {"num_steps": 200, "history_every": 50, "num_samples": 50},
    "nuts": {"num_warmup": 30, "num_samples": 20, "num_init_steps": 50},
}

# Short runs on purpose: a crowded MAP fit is not what is checked here.
pytestmark = pytest.mark.filterwarnings("ignore:MAP kept:UserWarning")


class _Events:
    """Counts JAX's trace and compile events while active."""

    def __init__(self):
        self.counts = collections.Counter()

    def _record(self, event, start_time, end_time, **kwargs):
        self.counts[event] += 1

    def __enter__(self):
        jax.monitoring.register_event_time_span_listener(self._record)
        return self

    def __exit__(self, *exc_info):
        jax.monitoring.unregister_event_time_span_listener(self._record)


def _clear_programs():
    """Forget every program and executable the package kept (a fresh process, in effect)."""
    _common._PROGRAMS.clear()
    _common._EXECUTABLES.clear()
    density_module._chart_program.cache_clear()
    api._constrain_all.cache_clear()
    jax.clear_caches()


def _galaxies():
    return np.asarray(datasets.galaxies().data, np.float64)


def _other_data():
    """Another data set in the galaxies' bucket (82 and 85 rows both pad to 88),
    in other units and with other clusters."""
    rng = np.random.default_rng(11)
    return np.concatenate([rng.normal(-3.0, 0.5, 40), rng.normal(4.0, 1.0, 45)]) * 1e3


@pytest.mark.parametrize("backend", ["map", "svi", "nuts"])
def test_a_second_fit_with_other_data_priors_and_key_traces_and_compiles_nothing(backend):
    options = {"backend": backend, "num_components": 10, "num_chains": 2, **OPTIONS[backend]}
    assert bucket_size(82) == bucket_size(85)
    dpgmm_ppl.fit(_galaxies(), rng_key=0, **options)
    other_priors = dpgmm_ppl.Priors(alpha_shape=2.0, alpha_rate=0.5, scale_rate=300.0)
    built = dict(_common.PROGRAM_COUNTS)
    with _Events() as events:
        second = dpgmm_ppl.fit(_other_data(), rng_key=7, priors=other_priors, **options)
    assert events.counts[TRACE_EVENT] == 0, events.counts
    assert events.counts[COMPILE_EVENT] == 0, events.counts
    assert _common.PROGRAM_COUNTS == built
    assert second.timing["compile_seconds"] < 0.1 * second.timing["run_seconds"]

    # What ran is the second fit, not the first one's constants: a fresh
    # compilation for the second data alone gives the same numbers, bit for bit.
    _clear_programs()
    with _Events() as events:
        fresh = dpgmm_ppl.fit(_other_data(), rng_key=7, priors=other_priors, **options)
    assert events.counts[COMPILE_EVENT] > 0
    for name in ("weights", "loc", "scale", "alpha"):
        np.testing.assert_array_equal(second.samples[name], fresh.samples[name], err_msg=name)
    if second.losses is not None:
        np.testing.assert_array_equal(second.losses, fresh.losses)
    assert second.priors.alpha_shape == 2.0 and float(second.priors.scale_rate) == 300.0


def test_the_padding_rows_change_nothing_beyond_rounding():
    """The galaxies padded to 88 rows against the same data unpadded: the same
    density, the same k-means++ starts, the same MAP and SVI fits."""
    x = _galaxies()
    kwargs = {"num_components": 6, "parameterization": "noncentered"}
    plain = build_log_density(x, **kwargs)
    padded = build_log_density(x, num_rows=bucket_size(len(x)), **kwargs)
    assert padded.data.shape[0] == 88 and plain.data.shape[0] == 82
    assert padded.num_data == plain.num_data == 82

    # Starts: the padding rows are never drawn, the draws are those of the real rows.
    keys = jax.random.split(jax.random.PRNGKey(3), 8)
    seed = lambda density: jax.vmap(lambda key: density.seed_position(key, density.data))(keys)
    positions, padded_positions = seed(plain), seed(padded)
    for name, value in positions.items():
        np.testing.assert_allclose(padded_positions[name], value, rtol=1e-5, atol=1e-6, err_msg=name)

    # The density at many positions: equal to float32 rounding of a sum of 82 terms.
    potential = lambda density: jax.vmap(density.potential_fn, in_axes=(0, None))(
        positions, density.data
    )
    log_joint = lambda density: jax.vmap(density.log_joint_fn, in_axes=(0, None))(
        positions, density.data
    )
    np.testing.assert_allclose(potential(padded), potential(plain), rtol=1e-6)
    np.testing.assert_allclose(log_joint(padded), log_joint(plain), rtol=1e-6)

    # Whole fits, through the backends: the optimisers follow the same path.
    for backend in (MAP, SVI):
        options = {**backend.defaults, **OPTIONS[backend.name], "parameterization": "noncentered"}
        runs = [
            backend.run(jax.random.PRNGKey(1), density, num_chains=2, **options)
            for density in (plain, padded)
        ]
        np.testing.assert_allclose(runs[1].losses, runs[0].losses, rtol=1e-4, atol=1e-3)
        for name in ("weights", "loc", "scale"):
            np.testing.assert_allclose(
                runs[1].history[name][:, -1], runs[0].history[name][:, -1],
                rtol=1e-3, atol=1e-4, err_msg=f"{backend.name} {name}",
            )


def test_cross_validation_folds_share_one_program():
    """The five training folds of Old Faithful (217 or 218 rows) pad to one bucket."""
    data = np.asarray(datasets.old_faithful().data)
    folds = np.array_split(np.random.default_rng(0).permutation(len(data)), 5)
    sizes = {len(data) - len(fold) for fold in folds}
    assert sizes == {217, 218} and {bucket_size(n) for n in sizes} == {224}
    options = {"num_components": 5, "num_steps": 100, "history_every": 50, "num_chains": 1}
    compiled = []
    for fold in folds:
        train = np.delete(data, fold, axis=0)
        with _Events() as events:
            dpgmm_ppl.fit(train, rng_key=len(compiled), **options)
        compiled.append(events.counts[COMPILE_EVENT])
    assert compiled[1:] == [0, 0, 0, 0], compiled


def test_an_optimizer_that_cannot_be_hashed_is_used_without_keeping_its_program():
    import dataclasses

    import optax

    adam = optax.adam(0.05)

    @dataclasses.dataclass  # eq=True without frozen: instances are unhashable
    class Update:
        def __call__(self, updates, state, params=None):
            return adam.update(updates, state, params)

    optimizer = optax.GradientTransformation(adam.init, Update())
    built = _common.PROGRAM_COUNTS["built"]
    x = _galaxies()
    fits = [dpgmm_ppl.fit(x, num_components=4, num_steps=100, optimizer=optimizer) for _ in range(2)]
    assert _common.PROGRAM_COUNTS["built"] == built + 2
    reference = dpgmm_ppl.fit(x, num_components=4, num_steps=100, optimizer=adam)
    for fit in fits:
        np.testing.assert_allclose(fit.losses, reference.losses, rtol=1e-5)
