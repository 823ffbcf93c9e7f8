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


@pytest.fixture(scope="session")
def seed_map_fit():
    """MAP on the notebook's data with its settings, 50 components, 8 restarts.

    Shared by the MAP acceptance checks and the NUTS check that compares
    against it; about five minutes on two CPU cores, so slow tests only.
    """
    import dpgmm_ppl
    from dpgmm_ppl.datasets import seed_mixture

    truth = seed_mixture()
    return truth, dpgmm_ppl.fit(truth.data, num_components=50, num_chains=8, rng_key=0)


@pytest.fixture(scope="session")
def seed_nuts_fit():
    """NUTS at its defaults on the notebook's data: 4 components, 4 chains x 500 draws.

    Four components, not 25: each spare component adds a funnel (its location
    and scale are free when its weight is small, pinned when it is not) that
    NUTS crosses only with deep trees (see :mod:`dpgmm_ppl.infer.nuts`).
    About 2.5 minutes on two CPU cores. Returns the truth, the fit and the
    RuntimeWarnings raised while fitting (a divergence warns).
    """
    import warnings

    import dpgmm_ppl
    from dpgmm_ppl.datasets import seed_mixture

    truth = seed_mixture()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        fit = dpgmm_ppl.fit(truth.data, backend="nuts", num_components=4, num_chains=4, rng_key=0)
    runtime_warnings = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    return truth, fit, runtime_warnings
