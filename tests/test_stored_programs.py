"""Programs stored traced on disk, beside JAX's cache (dpgmm_ppl/infer/_stored_programs.py).

A fresh process is simulated by forgetting every program the package kept
in memory (``_clear_programs``); the store is moved to a folder of the test.
What is asserted is what was read, traced and written, and that the numbers
do not change, never a time: the timings are in benchmarks/compile_reuse.py.
The real two-process case is in tests/test_compilation_cache.py.
"""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from test_program_reuse import OPTIONS, _clear_programs, _galaxies

import dpgmm_ppl
from dpgmm_ppl.density import build_log_density
from dpgmm_ppl.infer import _common, _progress, _stored_programs
from dpgmm_ppl.infer._stored_programs import compile_stored, exports_as_jit_compiles, stable_key

# Short runs on purpose: a crowded MAP fit is not what is checked here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:MAP kept:UserWarning", "ignore:NUTS:RuntimeWarning"),
    # What happens there instead: tests/test_compilation_cache.py.
    pytest.mark.skipif(not exports_as_jit_compiles(),
                       reason="jax >= 0.12.1: jax.export rounds otherwise than jit, "
                              "so nothing is stored"),
]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The store in a folder of this test; the package's programs forgotten before and after."""
    folder = tmp_path / "store"
    monkeypatch.setattr(_stored_programs, "store_directory", lambda: folder)
    _clear_programs()
    yield folder
    _clear_programs()


def _files(folder):
    return sorted(folder.glob("*.jaxexport")) if folder.exists() else []


def _fit(backend, **extra):
    return dpgmm_ppl.fit(_galaxies(), backend=backend, num_components=6, rng_key=3,
                         **OPTIONS[backend], **extra)


def _potential_traces():
    """How often this process traced the density of :func:`_fit` (its chart program)."""
    return sum(
        build_log_density(_galaxies(), num_components=6, parameterization=chart).program.counts[
            "potential_fn"]
        for chart in ("centered", "noncentered")
    )


def _assert_same_fit(fit, other):
    for name in ("alpha", "weights", "loc", "scale"):
        np.testing.assert_array_equal(fit.samples[name], other.samples[name], err_msg=name)


@pytest.mark.parametrize("backend", ["map", "svi", "nuts"])
def test_a_fresh_process_reads_the_programs_traced_and_fits_the_same(store, backend):
    counts = dict(_common.PROGRAM_COUNTS)
    first = _fit(backend)
    written = _files(store)
    assert len(written) == _common.PROGRAM_COUNTS["compiled"] - counts["compiled"] >= 1
    assert _common.PROGRAM_COUNTS["read"] == counts["read"]
    assert _potential_traces() > 0

    _clear_programs()  # a second process, in effect
    counts = dict(_common.PROGRAM_COUNTS)
    second = _fit(backend)
    assert _common.PROGRAM_COUNTS["read"] - counts["read"] == len(written)
    assert _potential_traces() == 0  # nothing that evaluates the density was traced
    assert _files(store) == written
    _assert_same_fit(first, second)

    # Without the store: the same numbers, bit for bit.
    _clear_programs()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_stored_programs, "store_directory", lambda: None)
        plain = _fit(backend)
    assert _potential_traces() > 0
    _assert_same_fit(first, plain)


def test_a_damaged_file_is_traced_and_written_again(store):
    first = _fit("map")
    (path,) = _files(store)
    whole = path.read_bytes()  # the serialised module is not the same byte for byte each time
    for damaged in (b"", whole[: len(whole) // 2], b"not a stored program"):
        path.write_bytes(damaged)
        _clear_programs()
        counts = dict(_common.PROGRAM_COUNTS)
        again = _fit("map")
        assert _common.PROGRAM_COUNTS["read"] == counts["read"]
        assert _potential_traces() > 0
        _assert_same_fit(first, again)
        # Written again, whole: the next process reads it.
        _clear_programs()
        counts = dict(_common.PROGRAM_COUNTS)
        _assert_same_fit(first, _fit("map"))
        assert _common.PROGRAM_COUNTS["read"] == counts["read"] + 1
        assert _potential_traces() == 0


def test_what_jax_export_refuses_is_compiled_as_it_is_and_not_tried_again(store, monkeypatch):
    def with_callback(x):
        jax.debug.callback(lambda value: None, x)
        return 2.0 * x

    program = jax.jit(with_callback)
    args = (np.arange(3.0, dtype=np.float32),)
    assert compile_stored(program, args, "with a callback") is None
    (marker,) = _files(store)  # what was learnt, so that no later process tries

    def must_not_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(_stored_programs, "_export", must_not_export)
    assert compile_stored(program, args, "with a callback") is None
    assert _files(store) == [marker]


def test_a_stored_program_runs_like_the_program(store):
    program = jax.jit(lambda pair, scale: {"sum": (pair[0] + pair[1]) * scale,
                                           "none": None, "pair": (pair[1], pair[0])})
    args = ((np.arange(4.0, dtype=np.float32), np.ones(4, np.float32)), np.float32(3.0))
    written, was_read = compile_stored(program, args, "a pair")
    read, was_read_again = compile_stored(program, args, "a pair")
    assert (was_read, was_read_again) == (False, True)
    other = ((np.full(4, 2.0, np.float32), np.arange(4.0, dtype=np.float32)), np.float32(-1.0))
    for run in (written, read):
        for call_args in (args, other):
            expected, got = program(*call_args), run(*call_args)
            assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected)
            for leaf, want in zip(jax.tree_util.tree_leaves(got),
                                  jax.tree_util.tree_leaves(expected)):
                np.testing.assert_array_equal(leaf, want)
    # Arguments of other shapes are another program, in another file.
    compile_stored(program, ((np.ones(5, np.float32),) * 2, np.float32(1.0)), "a pair")
    assert len(_files(store)) == 2


def test_programs_keyed_by_objects_or_with_a_progress_bar_are_not_stored(store, monkeypatch):
    assert stable_key(("map", ((), "float32", 6), "default", 200, None, True, 0.5)) == repr(
        ("map", ((), "float32", 6), "default", 200, None, True, 0.5))
    assert stable_key(("map", optax.adam(0.05))) is None
    assert stable_key(("map", [1, 2])) is None
    _fit("map", optimizer=optax.adam(0.05))  # a user's optimiser: no plain key
    with monkeypatch.context() as patch:
        patch.setattr(_progress, "IN_PROGRAM_WORK", 0.0)  # the bar counted in the program:
        _fit("map", progress_bar=True)  # host callbacks
    assert _files(store) == []
    # A fit this short counts its bar's steps outside the program, which is
    # then the program of the fit without a bar: stored, and found again.
    _fit("map", progress_bar=True)
    assert len(_files(store)) == 1
    counts = dict(_common.PROGRAM_COUNTS)
    _fit("map")
    assert len(_files(store)) == 1 and _common.PROGRAM_COUNTS["built"] == counts["built"]


def test_the_store_lives_in_jax_cache_directory_and_not_without_it(tmp_path):
    before = {name: jax.config.values[name]
              for name in ("jax_compilation_cache_dir", "jax_debug_nans")}
    try:  # nothing is compiled in between, so JAX's open cache is not moved
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        assert _stored_programs.store_directory() == tmp_path / _stored_programs.STORE_FOLDER
        jax.config.update("jax_debug_nans", True)
        assert _stored_programs.store_directory() is None
        jax.config.update("jax_debug_nans", False)
        jax.config.update("jax_compilation_cache_dir", None)
        assert _stored_programs.store_directory() is None
    finally:
        for name, value in before.items():
            jax.config.update(name, value)
