"""The adaptive-leapfrog prototype of ``benchmarks/walnuts.py`` keeps NUTS's target.

On ``U(x, y) = x**2 / 2 + y**4`` at a fixed step of 0.6, where stock NUTS
diverges on about one transition in twenty, 1,000 independent chains of 100
transitions (the last 80 kept) must give the exact second and fourth
moments within 4.5 standard errors over the chains (four checks, each
failing a correct sampler with probability about 7e-6). Without the
reversibility test of each step the same chains put ``E[y^2]`` about 25
standard errors too high (50 at 4,000 chains, ``benchmarks/README.md``), so
the check can tell the two apart.
"""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def walnuts(load_benchmark):
    return load_benchmark("walnuts")


def _scores(walnuts, **settings):
    with walnuts.adaptive_leapfrog(delta=1.0, **settings):
        moments, divergent = walnuts.quartic_moments(num_chains=1000)
    scores = np.concatenate([
        (moments[p][0] - walnuts.QUARTIC_TRUTH[p]) / moments[p][1] for p in (2, 4)
    ])
    return scores, divergent


def test_the_adaptive_leapfrog_samples_the_quartic_exactly_without_divergences(walnuts):
    scores, divergent = _scores(walnuts)
    assert divergent == 0
    np.testing.assert_array_less(np.abs(scores), 4.5)


def test_without_the_reversibility_test_the_moments_are_biased(walnuts):
    scores, _ = _scores(walnuts, check_reverse=False)
    assert scores[1] > 8.0, scores


def test_the_patch_is_undone_on_leaving_the_context(walnuts):
    from numpyro.infer import hmc, hmc_util

    originals = (hmc_util._build_basetree, hmc_util._iterative_build_subtree, hmc.build_tree)
    with walnuts.adaptive_leapfrog():
        assert hmc.build_tree is not originals[2]
    assert (hmc_util._build_basetree, hmc_util._iterative_build_subtree, hmc.build_tree) == originals
