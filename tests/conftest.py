"""Test configuration: CPU only, float32 unless DPGMM_X64=1, fixed seeds."""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

X64 = os.environ.get("DPGMM_X64", "0") == "1"
jax.config.update("jax_enable_x64", X64)


#: The slowest files, slowest first (seconds on two shared CPU cores, measured
#: 2026-11-30). With pytest-xdist, ``--dist loadfile --no-loadscope-reorder``
#: (the Makefile) hands whole files to the workers in this order, longest
#: first, so that the short files fill the gaps at the end. xdist's own order
#: (most tests first) left the 2-minute SBC check for last, one worker idle.
LONG_FILES = (
    "test_seed_data.py",  # 199
    "test_notebooks.py",  # 166
    "test_sklearn_estimator.py",  # 154
    "test_sbc.py",  # 118
    "test_numerics.py",  # 75
    "test_covariance.py",  # 66
    "test_sharding.py",  # 60
    "test_docstrings.py",  # 45
    "test_svi.py",  # 40
    "test_minibatch.py",  # 39
    "test_cli.py",  # 38
    "test_arviz_cli.py",  # 38
    "test_distributions.py",  # 35
    "test_api.py",  # 30
)

_CACHE_ENV = "DPGMM_TEST_JAX_CACHE"


def pytest_configure(config):
    """One persistent JAX compilation cache for the session, shared by the xdist workers.

    Many checks compile the same programs (the same tiny data, the same
    shapes); with the cache the second compilation is a file read (about 17 %
    of the suite's time, measured). The folder is new for every session and
    removed at its end, so nothing carries over between runs.
    """
    if _CACHE_ENV not in os.environ:  # the controller, or a run without workers
        os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="dpgmm-jax-cache-")
        config._dpgmm_cache_owner = os.environ[_CACHE_ENV]
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_unconfigure(config):
    owned = getattr(config, "_dpgmm_cache_owner", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


def pytest_collection_modifyitems(config, items):
    rank = {name: position for position, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


def pytest_report_header(config):
    return f"dpgmm_ppl tests: JAX {jax.__version__} on {jax.default_backend()}, x64={X64}"


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20261124)
