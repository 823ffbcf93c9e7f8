"""``parameterization="centered"`` works at NUTS's defaults; ``centered_sticks`` choices
that only the non-centred chart can make are refused with it, before anything is traced."""

from __future__ import annotations

import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl.infer.nuts import NUTS


def _options(**given):
    return {**NUTS.defaults, **given}


@pytest.mark.parametrize("centered_sticks", [NUTS.defaults["centered_sticks"], 0, np.int64(0)])
def test_the_default_and_zero_are_accepted_in_the_centred_chart(centered_sticks):
    NUTS.validate(_options(parameterization="centered", centered_sticks=centered_sticks))


@pytest.mark.parametrize("centered_sticks", [2, "auto"])
def test_a_choice_of_sticks_is_refused_in_the_centred_chart(monkeypatch, centered_sticks):
    monkeypatch.setattr(dpgmm_ppl.api, "build_log_density", lambda *a, **k: pytest.fail("traced"))
    with pytest.raises(ValueError, match=f"got centered_sticks={centered_sticks!r} "
                                         r"\(expected 0, or parameterization='noncentered'\)"):
        dpgmm_ppl.fit(np.arange(10.0), backend="nuts", parameterization="centered",
                      centered_sticks=centered_sticks)


def test_bad_values_are_still_refused_whatever_the_chart():
    with pytest.raises(ValueError, match="centered_sticks must be an integer >= 0"):
        NUTS.validate(_options(centered_sticks=-1))
    with pytest.raises(ValueError, match="centered_sticks must be 'auto' or"):
        NUTS.validate(_options(parameterization="centered", centered_sticks="all"))
    with pytest.raises(TypeError, match="centered_sticks must be an integer >= 0"):
        NUTS.validate(_options(parameterization="centered", centered_sticks=True))


def test_a_fit_in_the_centred_chart_runs_at_the_defaults_and_warns_that_it_is_biased():
    rng = np.random.default_rng(2)
    left, right = rng.normal(-3.0, 0.6, 25), rng.normal(2.5, 0.8, 15)
    with pytest.warns(UserWarning, match=r"centred chart of the sticks .* biased low"):
        fit = dpgmm_ppl.fit(np.concatenate([left, right]), backend="nuts",
                            parameterization="centered", num_components=2, num_warmup=30,
                            num_samples=20, num_init_steps=0, max_tree_depth=4, rng_key=0)
    assert fit.options["parameterization"] == "centered"
    # Two separated clusters: the posterior of each location sits on its
    # cluster's mean (posterior sd about 0.12 and 0.21; 0.6 is about 3 sd).
    loc = np.sort(np.median(fit.samples["loc"], axis=(0, 1)))
    np.testing.assert_allclose(loc, [left.mean(), right.mean()], atol=0.6)
