"""The same key and data give the same fit, bit for bit, on every backend.

For MAP, SVI, SVI with minibatches and NUTS, through :func:`dpgmm_ppl.fit`:
the same key (as an int or as the ``PRNGKey`` it stands for) gives
bit-identical samples, sample stats, losses and histories; another key gives
other draws; and the ArviZ output records the key, the package version and
the options, so that a fit can be repeated from its file.

Parts of that contract are already checked next to each backend's other
tests, on their own fixtures; this module checks the rest, and does not fit
again what they fit:

- same key, MAP: ``test_api.py::test_same_key_same_fit_and_different_key_different_start``
  checks losses and locations; here every site, sample stat and the history;
- same key, SVI with minibatches: ``test_minibatch.py::test_minibatch_svi_same_key_same_result_other_key_other_result``
  checks losses and samples; here the sample stats and the history too;
- same key, NUTS: ``test_nuts.py::test_same_key_gives_identical_draws``
  checks every sample and sample stat (NUTS has no losses): not repeated here;
- another key, MAP and SVI with minibatches: the same two tests in
  ``test_api.py`` and ``test_minibatch.py``; here SVI and NUTS;
- SVI through ``fit`` (``test_svi.py`` reruns the backend on one density):
  everything here.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl._arviz_compat import is_datatree
from dpgmm_ppl.infer import BACKENDS

# Slow: nine fits, each compiled; CI runs them on its first leg.
pytestmark = pytest.mark.slow

SEED, OTHER_SEED = 11, 12

#: Tiny fits: compiling dominates their time. NUTS skips the Adam descent of
#: its starts (``num_init_steps=0``), a second compiled program that would
#: double its time; its starts still come from the key (k-means++).
CONFIGS = {
    "map": {"backend": "map", "num_chains": 2, "num_steps": 100, "history_every": 50},
    "svi": {"backend": "svi", "num_chains": 2, "num_steps": 100, "num_samples": 20,
            "history_every": 50},
    "svi-minibatch": {"backend": "svi", "num_chains": 2, "num_steps": 100, "num_samples": 20,
                      "history_every": 50, "batch_size": 8},
    "nuts": {"backend": "nuts", "num_chains": 1, "num_warmup": 30, "num_samples": 30,
             "num_init_steps": 0, "max_tree_depth": 4},
}
#: The configurations each check runs on here (the others: see the module docstring).
SAME_KEY_HERE = ("map", "svi", "svi-minibatch")
OTHER_KEY_HERE = ("svi", "nuts")
#: The key each fit is started from: the seed, the same seed as a key, another seed.
KEYS = {"first": lambda: SEED, "again": lambda: jax.random.PRNGKey(SEED), "other": lambda: OTHER_SEED}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4)
    return np.concatenate([rng.normal(-3.0, 0.6, 15), rng.normal(3.0, 0.6, 15)]).astype(np.float32)


@pytest.fixture(scope="module")
def fit_of(data):
    """``fit_of(config, which)``: the fit of ``CONFIGS[config]`` from ``KEYS[which]``, made once."""
    made = {}

    def get(config, which):
        if (config, which) not in made:
            options = CONFIGS[config]
            if options["backend"] not in BACKENDS:
                pytest.fail(f"backend {options['backend']!r} is not registered")
            made[config, which] = dpgmm_ppl.fit(data, rng_key=KEYS[which](), num_components=3,
                                                **options)
        return made[config, which]

    return get


def assert_same_arrays(first, second, what):
    if first is None or second is None:
        assert first is None and second is None, what
        return
    if isinstance(first, dict):
        assert set(first) == set(second), what
        for name in first:
            np.testing.assert_array_equal(first[name], second[name], err_msg=f"{what}[{name!r}]")
        return
    np.testing.assert_array_equal(first, second, err_msg=what)


@pytest.mark.parametrize("config", SAME_KEY_HERE)
def test_same_key_gives_bit_identical_fits(fit_of, config):
    first, again = fit_of(config, "first"), fit_of(config, "again")
    assert_same_arrays(first.samples, again.samples, "samples")
    assert_same_arrays(first.sample_stats, again.sample_stats, "sample_stats")
    assert_same_arrays(first.losses, again.losses, "losses")
    assert_same_arrays(first.history, again.history, "history")
    np.testing.assert_array_equal(first.rng_key, again.rng_key)
    # The arrays compared above exist: 2 restarts x 100 steps, frames at steps 50 and 100.
    assert first.losses.shape == (2, 100)
    np.testing.assert_array_equal(first.history_steps, [50, 100])


@pytest.mark.parametrize("config", OTHER_KEY_HERE)
def test_other_key_gives_other_draws(fit_of, config):
    first, other = fit_of(config, "first"), fit_of(config, "other")
    assert not np.array_equal(first.rng_key, other.rng_key)
    for name in ("weights", "loc", "scale"):
        assert not np.array_equal(first.samples[name], other.samples[name]), name
    assert not np.array_equal(first.sample_stats["lp"], other.sample_stats["lp"])
    if first.losses is not None:
        assert not np.array_equal(first.losses, other.losses)


def metadata_of(fit):
    """The attributes of the ArviZ output: on the posterior group (both ArviZ
    lines) and, on ArviZ 1.x, the same on the tree itself."""
    idata = fit.to_arviz()
    if is_datatree():
        assert dict(idata.attrs) == dict(idata["posterior"].attrs)
        return dict(idata["posterior"].attrs)
    return dict(idata.posterior.attrs)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_arviz_output_records_key_version_and_options(fit_of, config):
    options = CONFIGS[config]
    attrs = metadata_of(fit_of(config, "first"))
    assert attrs["inference_library"] == "dpgmm_ppl"
    assert attrs["inference_library_version"] == dpgmm_ppl.__version__
    assert attrs["backend"] == options["backend"]
    assert json.loads(attrs["rng_key"]) == np.asarray(jax.random.PRNGKey(SEED)).tolist()
    recorded = json.loads(attrs["options"])
    assert set(recorded) == set(BACKENDS[options["backend"]].defaults)
    for name, value in options.items():
        if name in recorded:
            assert recorded[name] == value, name
    # The record identifies the fit: the same for the same key, other for another.
    if config in SAME_KEY_HERE:
        repeated = metadata_of(fit_of(config, "again"))
        for name in ("rng_key", "options", "priors", "inference_library_version", "num_components"):
            assert repeated[name] == attrs[name], name
    if config in OTHER_KEY_HERE:
        changed = metadata_of(fit_of(config, "other"))
        assert changed["rng_key"] != attrs["rng_key"]
        assert changed["options"] == attrs["options"]
