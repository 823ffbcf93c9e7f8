"""Simulation-based calibration of backend="nuts" (slow; ``benchmarks/sbc.py`` at a reduced size).

200 replications of 50 points from the prior, 5 components, NUTS with 200
warmup steps and 200 draws thinned to 100: if the sampler is right, the rank
of each true statistic among the draws is uniform, and a chi-square test on
10 bins gives a uniform p-value. Three statistics are tested at 0.01 each,
so a correct sampler fails this check about 3% of the time over seeds; the
seed is fixed, so the outcome is the same on every run of one platform.
Measured (JAX 0.10.2, 2 CPU cores): p = 0.89 (alpha), 0.33 (largest
weight), 0.54 (log-likelihood), 18 divergent transitions, 85-145 s. (Before
the matrix-product likelihood, whose float32 rounding differs: 0.20, 0.96,
0.995.) The same run in NumPyro's centred chart of the sticks gave p =
0.0034 for alpha, which this test would catch.
"""

import importlib.util
import pathlib

import pytest

# Long fits: compiled with XLA's optimisation passes (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xla_optimized]

SBC_SCRIPT = pathlib.Path(__file__).parents[1] / "benchmarks" / "sbc.py"


@pytest.fixture(scope="module")
def sbc():
    spec = importlib.util.spec_from_file_location("sbc_benchmark", SBC_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ranks_of_alpha_and_label_invariant_statistics_are_uniform(sbc):
    result = sbc.run_sbc(
        num_replications=200, num_warmup=200, num_samples=200, thinning=2,
        num_init_steps=300, seed=0,
    )
    print("p-values:", result.p_values, "divergent:", int(result.divergences.sum()))
    assert result.num_draws == 100
    for name, histogram in result.histograms.items():
        assert histogram.sum() == 200, name
    for name, p_value in result.p_values.items():
        assert p_value > 0.01, (name, p_value, result.histograms[name].tolist())
