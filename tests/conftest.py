"""Test configuration: CPU only, float32 unless DPGMM_X64=1, fixed seeds."""

import contextlib
import importlib.util
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
#: Most checks fit small data for a few hundred steps, and XLA's optimisation
#: passes cost more than they save there: three quarters of those checks' time
#: was XLA compilation, and with these passes off the suite (heavy files
#: aside) took 601 s of worker time instead of 875 s (measured 2026-11-30,
#: one core per file set). The checks that run long computations opt back in
#: with ``@pytest.mark.xla_optimized`` (a module's ``pytestmark`` or one test),
#: where unoptimised code ran 2-3x slower. In the environment, so that the
#: subprocesses (CLI runs, notebook kernels, the four-device sharding checks)
#: inherit it; ``JAX_DISABLE_MOST_OPTIMIZATIONS=0`` runs everything optimised.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
FAST_COMPILE = os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "1"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

X64 = os.environ.get("DPGMM_X64", "0") == "1"
jax.config.update("jax_enable_x64", X64)


#: The slowest files, slowest first (seconds of worker time in one run of
#: ``make test`` on two shared CPU cores, measured 2026-12-06). With
#: pytest-xdist, ``--dist loadfile --no-loadscope-reorder`` (the Makefile)
#: hands whole files to the workers in this order, longest first, so that the
#: short files fill the gaps at the end. xdist's own order (most tests first)
#: left the 2-minute SBC check for last, one worker idle.
LONG_FILES = (
    "test_seed_data.py",  # 167
    "test_sbc.py",  # 150
    "test_nuts_jumps.py",  # 121
    "test_sklearn_estimator.py",  # 103
    "test_map_objective.py",  # 100
    "test_program_reuse.py",  # 76
    "test_numerics.py",  # 67
    "test_docstrings.py",  # 58
    "test_covariance.py",  # 55
    "test_multiprocess.py",  # 53 (2 processes x 2 devices, mostly compilation)
    "test_nuts.py",  # 52
    "test_stored_programs.py",  # 44
    "test_sharding.py",  # 41
    "test_cli.py",  # 39
    "test_distributions.py",  # 37
    "test_compilation_cache.py",  # 35
    "test_arviz_cli.py",  # 31
    "test_step_functions.py",  # 31
    "test_minibatch.py",  # 30
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
    # The subprocesses (CLI runs, notebook kernels) use it too, through the
    # package's own setting, instead of the user's cache directory.
    os.environ["DPGMM_PPL_CACHE_DIR"] = os.environ[_CACHE_ENV]
    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def pytest_unconfigure(config):
    owned = getattr(config, "_dpgmm_cache_owner", None)
    if owned:
        shutil.rmtree(owned, ignore_errors=True)
        os.environ.pop(_CACHE_ENV, None)


def pytest_addoption(parser):
    parser.addoption(
        "--examples", action="store_true",
        help="also run the example notebooks (tests marked 'examples'; make examples)",
    )


def pytest_collection_modifyitems(config, items):
    """The long files first; the example notebooks only with ``--examples``.

    The notebooks (four kernels, about 160 s of worker time) are examples, not
    checks of the package's parts: ``make examples`` runs them, and CI runs
    that beside the second leg, which keeps ``make test`` under 15 minutes
    on two cores.
    """
    if not config.getoption("--examples"):
        examples = [item for item in items if item.get_closest_marker("examples")]
        if examples:
            config.hook.pytest_deselected(items=examples)
            items[:] = [item for item in items if not item.get_closest_marker("examples")]
    rank = {name: position for position, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


def pytest_report_header(config):
    return f"dpgmm_ppl tests: JAX {jax.__version__} on {jax.default_backend()}, x64={X64}"


@contextlib.contextmanager
def _xla_optimization(node):
    """XLA's optimisation passes on for ``node`` if it is marked ``xla_optimized``."""
    optimized = node.get_closest_marker("xla_optimized") is not None
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", FAST_COMPILE and not optimized)
    try:
        yield optimized
    finally:  # the module's setting again, for its fixtures that later tests set up
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(autouse=True, scope="module")
def _module_xla_optimization(request):
    """For a module's own fixtures, set up before any test's (a marked module's long fits)."""
    with _xla_optimization(request.node) as optimized:
        yield optimized


@pytest.fixture(autouse=True)
def xla_optimized(request, _module_xla_optimization):
    """Whether this test compiles with XLA's optimisation passes (see ``FAST_COMPILE``)."""
    with _xla_optimization(request.node) as optimized:
        yield optimized


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20261124)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("sbc")``: the script ``benchmarks/sbc.py``, imported as a module."""

    def load(name):
        path = pathlib.Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
