"""Helpers shared by the benchmark scripts in this folder.

The scripts run as ``python benchmarks/NAME.py``, so Python puts this folder
on ``sys.path`` and they import this module as ``_common``. It holds:

- :func:`force_float32`, run on import: every benchmark measures float32,
  whatever ``JAX_ENABLE_X64`` says;
- :func:`print_header`: versions, device, CPUs and load, one line each;
- :func:`time_call`: a warm-up (compiling) call, then the median of repeats;
  :func:`time_interleaved` does the same for several programs at once, their
  timed calls alternating so that they share the machine's load;
- :func:`handwritten_dpgmm`: the DP-GMM written in plain NumPyro, the stock
  baseline for ``map_seed.py`` (``AutoDelta``) and ``nuts_ess.py`` (NUTS);
- :func:`sample_pymc`: the same model in PyMC, sampled with ``pm.sample``
  (``nuts_ess.py`` and ``pymc_check.py``; ``None`` where PyMC is missing);
- :func:`ratio`: ``ours / baseline`` as text.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from dpgmm_ppl.priors import Priors

__all__ = [
    "force_float32",
    "print_header",
    "time_call",
    "time_interleaved",
    "handwritten_dpgmm",
    "default_priors",
    "sample_pymc",
    "ratio",
]


def force_float32():
    """Switch JAX's x64 mode off: the benchmarks measure float32."""
    jax.config.update("jax_enable_x64", False)


force_float32()


def print_header(title, *lines):
    """Print the title, the software versions, the device, the CPUs and the load."""
    import jaxlib
    import optax

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(title)
    print(f"  jax {jax.__version__}, jaxlib {jaxlib.__version__}, numpyro {numpyro.__version__}, "
          f"optax {optax.__version__}, python {platform.python_version()}")
    device = jax.devices()[0]
    print(f"  device: {device.device_kind} ({jax.default_backend()}), CPUs: {os.cpu_count()} "
          f"(usable: {affinity}), load average: "
          + ("n/a" if load is None else ", ".join(f"{v:.2f}" for v in load)))
    print("  dtype: float32 (x64 off)")
    for line in lines:
        print(f"  {line}")
    print()


def time_call(fn, *args, repeats=3):
    """Time ``fn(*args)``: one warm-up call (compilation included), then ``repeats`` calls.

    Every call is waited for with ``jax.block_until_ready``.

    Returns
    -------
    dict
        ``first`` (seconds of the warm-up call), ``median`` (of the repeats),
        ``times`` (every repeat) and ``output`` (of the last call).
    """
    start = time.perf_counter()
    output = jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {"first": first, "median": statistics.median(times), "times": times,
            "output": output}


def time_interleaved(calls, repeats=3):
    """Time several zero-argument callables against each other under the same load.

    Each callable gets one warm-up call (compilation included), then the
    timed calls alternate between them, ``repeats`` rounds, so that a change
    in the machine's load hits all of them alike.

    Parameters
    ----------
    calls : dict
        Name to zero-argument callable.

    Returns
    -------
    dict
        Name to the dict of :func:`time_call`.
    """
    results = {}
    for name, fn in calls.items():
        start = time.perf_counter()
        output = jax.block_until_ready(fn())
        results[name] = {"first": time.perf_counter() - start, "times": [], "output": output}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            results[name]["output"] = jax.block_until_ready(fn())
            results[name]["times"].append(time.perf_counter() - start)
    for result in results.values():
        result["median"] = statistics.median(result["times"])
    return results


def handwritten_dpgmm(data, *, num_components, priors, subsample_size=None):
    """The truncated stick-breaking DP-GMM as one would write it in plain NumPyro.

    ``alpha ~ Gamma``, ``K - 1`` sticks ``v_k ~ Beta(1, alpha)`` turned into
    log weights ``log w_k = log v_k + sum_{j<k} log(1 - v_j)`` (the last
    weight is the rest of the stick), ``loc_k ~ Normal``, ``scale_k ~
    InverseGamma`` and a ``MixtureSameFamily`` likelihood, with the
    hyperparameters of ``priors`` (resolved: use ``Priors().resolve(data)``
    for dpgmm_ppl's defaults). Sample sites: ``alpha``, ``sticks``, ``loc``,
    ``scale``; the weights are a deterministic site.

    Its latent space differs from :func:`dpgmm_ppl.dpgmm`'s in one place: the
    sticks, not the weights on the simplex, are the sampled site, so the
    log joint densities differ by the Jacobian of the map from sticks to
    weights (the priors and the likelihood are the same).
    """
    alpha = numpyro.sample("alpha", dist.Gamma(priors.alpha_shape, priors.alpha_rate))
    with numpyro.plate("sticks_plate", num_components - 1):
        sticks = numpyro.sample("sticks", dist.Beta(1.0, alpha))
    log1m = jnp.log1p(-sticks)
    remaining_before = jnp.concatenate([jnp.zeros(1), jnp.cumsum(log1m)[:-1]])
    log_weights = jnp.concatenate([jnp.log(sticks) + remaining_before, jnp.sum(log1m)[None]])
    numpyro.deterministic("weights", jnp.exp(log_weights))
    with numpyro.plate("component", num_components):
        loc = numpyro.sample("loc", dist.Normal(priors.loc_mean, priors.loc_scale))
        scale = numpyro.sample("scale", dist.InverseGamma(priors.scale_shape, priors.scale_rate))
    likelihood = dist.MixtureSameFamily(
        dist.Categorical(logits=log_weights), dist.Normal(loc, scale)
    )
    # With ``subsample_size``, NumPyro's own minibatch idiom: the plate draws
    # the indices and the likelihood is scaled by N / subsample_size.
    with numpyro.plate("data", data.shape[0], subsample_size=subsample_size) as index:
        numpyro.sample("obs", likelihood, obs=data if subsample_size is None else data[index])


def default_priors(data):
    """dpgmm_ppl's default hyperparameters, resolved on ``data`` (float32 fields)."""
    return Priors().resolve(data)


def sample_pymc(data, *, num_components, priors, num_warmup, num_samples, num_chains, rng_key):
    """The DP-GMM of 1-D ``data`` in PyMC, sampled by ``pm.sample`` at its defaults.

    Beta(1, alpha) sticks turned into log weights as in
    :func:`handwritten_dpgmm`, Normal locations, inverse-gamma scales and a
    ``NormalMixture`` likelihood, with the hyperparameters of ``priors``
    (resolved). ``pm.sample`` runs its NUTS (diagonal mass, target 0.8) on
    one core; its compilation happens inside and is timed with it.

    Returns
    -------
    dict or None
        ``alpha`` ``(chain, draw)``, ``weights``, ``loc``, ``scale``
        ``(chain, draw, K)``, ``lp``, ``diverging``, ``n_steps`` ``(chain,
        draw)`` and ``wall`` (seconds of the whole call); ``None`` when PyMC
        is not installed (``pip install 'dpgmm-ppl[pymc]'``).
    """
    try:
        import pymc as pm
        import pytensor.tensor as pt
    except ImportError:
        return None
    start = time.perf_counter()
    with pm.Model():
        alpha = pm.Gamma("alpha", alpha=float(priors.alpha_shape), beta=float(priors.alpha_rate))
        sticks = pm.Beta("sticks", 1.0, alpha, shape=num_components - 1)
        log1m = pt.log1p(-sticks)
        before = pt.concatenate([pt.zeros(1), pt.cumsum(log1m)[:-1]])
        log_weights = pt.concatenate([pt.log(sticks) + before, pt.sum(log1m, keepdims=True)])
        weights = pm.Deterministic("weights", pt.exp(log_weights))
        loc = pm.Normal("loc", float(priors.loc_mean), float(priors.loc_scale), shape=num_components)
        scale = pm.InverseGamma("scale", alpha=float(priors.scale_shape),
                                beta=float(priors.scale_rate), shape=num_components)
        pm.NormalMixture("obs", w=weights, mu=loc, sigma=scale, observed=np.asarray(data))
        trace = pm.sample(draws=num_samples, tune=num_warmup, chains=num_chains, cores=1,
                          random_seed=rng_key, progressbar=False, compute_convergence_checks=False)
    wall = time.perf_counter() - start
    posterior, stats = trace.posterior, trace.sample_stats
    return {
        **{name: posterior[name].values for name in ("alpha", "weights", "loc", "scale")},
        "lp": stats["lp"].values,
        "diverging": stats["diverging"].values,
        "n_steps": stats["n_steps"].values,
        "wall": wall,
    }


def ratio(ours, baseline):
    """``ours / baseline`` as text: two decimals, or two significant digits below 0.1.

    ``n/a`` if either is missing.
    """
    if ours is None or baseline is None or baseline == 0:
        return "n/a"
    value = ours / baseline
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"
