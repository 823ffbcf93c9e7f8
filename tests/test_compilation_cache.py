"""The persistent compilation cache that ``fit`` turns on (dpgmm_ppl/_compilation_cache.py).

The test session has its own JAX cache (tests/conftest.py), and JAX's cache
is process-wide, so every check of what ``fit`` does to the cache runs in a
fresh Python process with a clean environment. What is asserted is what the
cache holds and what JAX reports (its monitoring events for cache reads and
writes), never how long anything took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl._compilation_cache import resolve_cache_directory
from dpgmm_ppl.infer._stored_programs import STORE_FOLDER, exports_as_jit_compiles

#: Fits tiny data in a fresh process and prints, as JSON, what the cache saw.
#: argv[1]: {"user_cache_dir": str or null, "fits": [[num_points, option], ...]},
#: where option "default" passes no compilation_cache argument.
FIT_SCRIPT = r"""
import json, sys, warnings
import jax
import numpy as np

request = json.loads(sys.argv[1])
if request["user_cache_dir"]:  # a user who set JAX's cache up before dpgmm_ppl
    jax.config.update("jax_compilation_cache_dir", request["user_cache_dir"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
events = []
jax.monitoring.register_event_listener(lambda event, **_: events.append(event))
# JAX compiles before dpgmm_ppl sets a cache directory (it looks for one again later).
jax.jit(jax.numpy.sin)(1.0).block_until_ready()

import dpgmm_ppl

from dpgmm_ppl.infer._common import PROGRAM_COUNTS

shapes, weights = [], []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for num_points, option in request["fits"]:
        options = {} if option == "default" else {"compilation_cache": option}
        data = np.linspace(-2.0, 2.0, num_points)
        fit = dpgmm_ppl.fit(data, num_components=3, num_steps=50, **options)
        shapes.append(list(fit.samples["weights"].shape))
        weights.append(np.asarray(fit.samples["weights"]).ravel().tolist())
print(json.dumps({
    "cache_dir": jax.config.jax_compilation_cache_dir,
    "min_compile_seconds": jax.config.jax_persistent_cache_min_compile_time_secs,
    "reads": events.count("/jax/compilation_cache/cache_hits"),
    "writes": events.count("/jax/compilation_cache/cache_misses"),
    "cache_warnings": [
        [type(w.message).__name__, str(w.message)]
        for w in caught if "compilation cache" in str(w.message)
    ],
    "weights_shapes": shapes,
    "weights": weights,
    "programs_read": PROGRAM_COUNTS["read"],
}))
"""

#: Variables of the test session or of the user that would choose the cache for the child.
_CACHE_VARIABLES = (
    "DPGMM_TEST_JAX_CACHE",
    "DPGMM_PPL_CACHE",
    "DPGMM_PPL_CACHE_DIR",
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_ENABLE_COMPILATION_CACHE",
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
)

ONE_FIT = [[20, "default"]]


@pytest.fixture
def sandbox(tmp_path):
    """A folder for the child's home, XDG cache and cache directories: nothing lands in ~."""
    (tmp_path / "home").mkdir()
    return tmp_path


def _user_cache(sandbox):
    return sandbox / "xdg-cache" / "dpgmm_ppl" / "jax"


def _fit_in_new_process(sandbox, fits, *, environment=None, user_cache_dir=None):
    env = {k: v for k, v in os.environ.items() if k not in _CACHE_VARIABLES}
    env.update(
        JAX_PLATFORMS="cpu",
        HOME=str(sandbox / "home"),
        XDG_CACHE_HOME=str(sandbox / "xdg-cache"),
        **(environment or {}),
    )
    request = {"user_cache_dir": None if user_cache_dir is None else str(user_cache_dir),
               "fits": fits}
    done = subprocess.run(
        [sys.executable, "-c", FIT_SCRIPT, json.dumps(request)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["weights_shapes"] == [[1, 1, 3]] * len(fits)
    return report


def _entries(directory):
    """The names of the cached programs in ``directory`` (JAX's ``<key>-cache`` files)."""
    return sorted(path.name for path in Path(directory).glob("*-cache"))


def test_a_second_process_reads_what_the_first_wrote(sandbox):
    first = _fit_in_new_process(sandbox, ONE_FIT)  # the default: the user's cache directory
    written = _entries(_user_cache(sandbox))
    assert first["cache_dir"] == str(_user_cache(sandbox))
    assert first["min_compile_seconds"] == 0.0
    assert first["writes"] == len(written) >= 1
    assert first["cache_warnings"] == []
    # The same directory through the environment variable, from another process.
    second = _fit_in_new_process(
        sandbox, ONE_FIT, environment={"DPGMM_PPL_CACHE_DIR": str(_user_cache(sandbox))}
    )
    assert second["reads"] >= len(written)
    assert second["writes"] == 0
    assert _entries(_user_cache(sandbox)) == written
    assert not (sandbox / "home" / ".cache").exists()
    # The fit's program, traced by the first process (infer/_stored_programs.py),
    # read by the second and run to the same numbers, bit for bit. From jax
    # 0.12.1 on nothing is stored (an exported program rounds otherwise than
    # under jit), and the two processes trace it alike, to the same numbers.
    stored = sorted((_user_cache(sandbox) / STORE_FOLDER).glob("*.jaxexport"))
    if exports_as_jit_compiles():
        assert len(stored) == 1
        assert (first["programs_read"], second["programs_read"]) == (0, 1)
    else:
        assert stored == []
        assert (first["programs_read"], second["programs_read"]) == (0, 0)
    assert second["weights"] == first["weights"]


def test_false_turns_no_cache_on(sandbox):
    moved = sandbox / "moved-cache"
    report = _fit_in_new_process(
        sandbox, [[20, False]], environment={"DPGMM_PPL_CACHE_DIR": str(moved)}
    )
    assert report["cache_dir"] is None
    assert report["min_compile_seconds"] == 1.0  # JAX's own default, untouched
    assert report["writes"] == report["reads"] == 0
    assert not moved.exists() and not _user_cache(sandbox).exists()


def test_a_path_writes_there_and_a_later_path_moves_the_cache(sandbox):
    first, second = sandbox / "first", sandbox / "second"
    # 70 points: another bucket of rows (72, not 64), so the second fit
    # compiles (and writes) again.
    report = _fit_in_new_process(sandbox, [[20, str(first)], [70, str(second)]])
    assert report["cache_dir"] == str(second)
    assert _entries(first) and _entries(second)
    assert not set(_entries(first)) & set(_entries(second))
    assert report["writes"] == len(_entries(first)) + len(_entries(second))
    assert not _user_cache(sandbox).exists()


def test_an_unwritable_directory_is_skipped_with_one_warning(sandbox):
    blocker = sandbox / "a-file"
    blocker.write_text("not a directory")
    report = _fit_in_new_process(
        sandbox,
        [[20, "default"], [20, str(blocker / "explicit")]],
        environment={"DPGMM_PPL_CACHE_DIR": str(blocker / "from-environment")},
    )
    ((category, message),) = report["cache_warnings"]
    assert category == "UserWarning"
    assert str(blocker / "from-environment") in message
    assert "compilation_cache=False" in message and "DPGMM_PPL_CACHE_DIR" in message
    assert report["cache_dir"] is None
    assert report["writes"] == 0
    assert blocker.read_text() == "not a directory"


def test_a_cache_directory_set_outside_dpgmm_ppl_is_kept(sandbox):
    user, moved, explicit = sandbox / "user", sandbox / "moved", sandbox / "explicit"
    report = _fit_in_new_process(
        sandbox,
        [[20, "default"], [20, str(explicit)]],
        environment={"DPGMM_PPL_CACHE_DIR": str(moved)},
        user_cache_dir=user,
    )
    assert report["cache_dir"] == str(user)
    assert report["min_compile_seconds"] == 0  # the user's threshold, not lowered
    assert report["writes"] == len(_entries(user)) >= 2
    assert not moved.exists() and not explicit.exists() and not _user_cache(sandbox).exists()
    ((category, message),) = report["cache_warnings"]  # the ignored explicit path
    assert category == "UserWarning" and str(explicit) in message and str(user) in message


@pytest.mark.parametrize("option", [3, 1.5, True, ["cache"], b"cache"])
def test_a_bad_option_type_raises_before_anything_is_traced(option):
    with pytest.raises(TypeError, match=r"compilation_cache must be None .* got .* of type"):
        dpgmm_ppl.fit(np.linspace(-2.0, 2.0, 20), num_components=3, num_steps=50,
                      compilation_cache=option)


def test_an_empty_path_is_refused():
    with pytest.raises(ValueError, match="compilation_cache=False for no cache"):
        dpgmm_ppl.fit(np.linspace(-2.0, 2.0, 20), num_components=3, compilation_cache="")


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """No cache variable set, and a home of the test's own (only paths are computed here)."""
    for name in _CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return monkeypatch


def test_the_directory_follows_the_environment(clean_environment, tmp_path):
    home = tmp_path / "home"
    assert resolve_cache_directory(None) == home / ".cache" / "dpgmm_ppl" / "jax"
    clean_environment.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert resolve_cache_directory(None) == home / ".cache" / "dpgmm_ppl" / "jax"
    clean_environment.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_directory(None) == tmp_path / "xdg" / "dpgmm_ppl" / "jax"
    clean_environment.setenv("DPGMM_PPL_CACHE_DIR", "~/moved")
    assert resolve_cache_directory(None) == home / "moved"
    assert resolve_cache_directory(tmp_path / "explicit") == tmp_path / "explicit"
    clean_environment.setenv("DPGMM_PPL_CACHE_DIR", "")
    assert resolve_cache_directory(None) is None


@pytest.mark.parametrize("switch", ["0", "off", "OFF", "false", "no"])
def test_the_environment_switch_turns_the_default_off(clean_environment, switch, tmp_path):
    clean_environment.setenv("DPGMM_PPL_CACHE", switch)
    clean_environment.setenv("DPGMM_PPL_CACHE_DIR", str(tmp_path / "moved"))
    assert resolve_cache_directory(None) is None
    assert resolve_cache_directory(False) is None
    assert resolve_cache_directory(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_a_relative_path_is_made_absolute(clean_environment, tmp_path):
    clean_environment.chdir(tmp_path)
    assert resolve_cache_directory("cache") == tmp_path / "cache"
