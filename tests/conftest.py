"""Test configuration: CPU only, float32 unless DPGMM_X64=1, fixed seeds."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

X64 = os.environ.get("DPGMM_X64", "0") == "1"
jax.config.update("jax_enable_x64", X64)


def pytest_report_header(config):
    return f"dpgmm_ppl tests: JAX {jax.__version__} on {jax.default_backend()}, x64={X64}"


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for every test."""
    return np.random.default_rng(20261124)
