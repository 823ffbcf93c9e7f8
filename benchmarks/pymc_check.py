"""Cross-check of the NUTS backend against PyMC on the same model and data.

The galaxies (82 velocities, :func:`dpgmm_ppl.datasets.galaxies`), K = 20
components, dpgmm_ppl's default priors resolved on the data and given to
both sides in full, so that the two programs describe one posterior:

``ours``
    ``dpgmm_ppl.fit(data, backend="nuts", num_components=20, ...)`` at the
    package's defaults otherwise.
``pymc``
    The same model in PyMC (``_common.sample_pymc``: Beta(1, alpha) sticks,
    Normal locations, inverse-gamma scales, ``NormalMixture``), ``pm.sample``
    at its defaults.

Printed for each side, each with its Monte-Carlo standard error (ArviZ's
``mcse``, which accounts for autocorrelation):

- the posterior mean of ``alpha`` and its 5 %, 50 % and 95 % quantiles;
- the posterior mean of the number of components above 1 % weight;
- the posterior predictive density at 50 points spread over the data's
  range (a summary line: the largest standardised difference and the mean
  relative difference, then every fifth point).

``z`` is the difference over the root of the two squared standard errors.
If the two samplers draw from the same posterior, each ``|z|`` is about a
standard normal draw: above 3 for a single statistic, or above 3.5 for the
largest of the 50 densities, says they differ. The check needs PyMC
(``pip install 'dpgmm-ppl[pymc]'``); without it the script says so and
stops.

Run ``python benchmarks/pymc_check.py`` (4 chains x (1,000 + 1,000) each;
a few minutes on two cores) or with ``--num-samples`` and friends.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import arviz
import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import default_priors, print_header, sample_pymc  # noqa: E402

import dpgmm_ppl  # noqa: E402
from dpgmm_ppl.datasets import galaxies  # noqa: E402

QUANTILES = (0.05, 0.5, 0.95)
KEPT_WEIGHT = 0.01


def _mcse(values, **kwargs):
    # A scalar, or an array of one value with some ArviZ and NumPy versions.
    return float(np.ravel(arviz.mcse(values, **kwargs))[0])


def _mean_and_error(values):
    """Mean of a ``(chain, draw)`` array and its Monte-Carlo standard error."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), _mcse(values, method="mean")


def _quantile_and_error(values, prob):
    values = np.asarray(values, np.float64)
    return float(np.quantile(values, prob)), _mcse(values, method="quantile", prob=prob)


def summaries(draws, grid):
    """The compared statistics of one sampler's draws, each as ``(value, mcse)``.

    ``draws``: ``alpha`` ``(chain, draw)``; ``weights``, ``loc``, ``scale``
    ``(chain, draw, K)``. Returns a dict of name to ``(value, error)``, the
    densities at ``grid`` under ``"density"`` as two arrays.
    """
    out = {"alpha mean": _mean_and_error(draws["alpha"])}
    for prob in QUANTILES:
        out[f"alpha q{int(prob * 100):02d}"] = _quantile_and_error(draws["alpha"], prob)
    out[f"components > {KEPT_WEIGHT:.0%}"] = _mean_and_error(np.sum(draws["weights"] > KEPT_WEIGHT, axis=-1))
    weights, loc, scale = (np.asarray(draws[name], np.float64) for name in ("weights", "loc", "scale"))
    # Per draw, the mixture density at each grid point: (chain, draw, point).
    density = np.einsum(
        "cdk,cdkg->cdg", weights,
        stats.norm.pdf(grid[None, None, None, :], loc[..., None], scale[..., None]),
    )
    means = density.mean(axis=(0, 1))
    errors = np.array([_mcse(density[..., g], method="mean") for g in range(grid.size)])
    out["density"] = (means, errors)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-components", type=int, default=20)
    parser.add_argument("--num-chains", type=int, default=4)
    parser.add_argument("--num-warmup", type=int, default=1000)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--rng-key", type=int, default=0)
    args = parser.parse_args(argv)

    data = np.asarray(galaxies().data, np.float64)
    priors = default_priors(data)
    grid = np.linspace(data.min(), data.max(), 50)
    print_header(
        "NUTS against PyMC on the galaxies: one model, one posterior",
        f"{data.size} points; K = {args.num_components}; {args.num_chains} chains x "
        f"({args.num_warmup} + {args.num_samples}); rng key {args.rng_key}; priors: "
        f"alpha Gamma({float(priors.alpha_shape):g}, {float(priors.alpha_rate):g}), "
        f"loc N({float(priors.loc_mean):.3f}, {float(priors.loc_scale):.3f}), "
        f"scale InverseGamma({float(priors.scale_shape):g}, {float(priors.scale_rate):.3f})",
    )
    sizes = dict(num_warmup=args.num_warmup, num_samples=args.num_samples,
                 num_chains=args.num_chains, rng_key=args.rng_key)
    pymc = sample_pymc(data, num_components=args.num_components, priors=priors, **sizes)
    if pymc is None:
        print("PyMC is not installed (pip install 'dpgmm-ppl[pymc]'): nothing to compare.")
        return 1
    start = time.perf_counter()
    fit = dpgmm_ppl.fit(data, backend="nuts", num_components=args.num_components,
                        priors=priors, **sizes)
    ours = {name: np.asarray(fit.samples[name]) for name in ("alpha", "weights", "loc", "scale")}
    ours.update(wall=time.perf_counter() - start, diverging=np.asarray(fit.sample_stats["diverging"]))

    theirs_summary, ours_summary = summaries(pymc, grid), summaries(ours, grid)
    print(f"{'':<18} {'ours':>16} {'pymc':>16} {'z':>7}")
    worst = 0.0
    for name, (value, error) in ours_summary.items():
        if name == "density":
            continue
        other, other_error = theirs_summary[name]
        z = (value - other) / np.hypot(error, other_error)
        worst = max(worst, abs(z))
        print(f"{name:<18} {value:>8.3f} ± {error:<5.3f} {other:>8.3f} ± {other_error:<5.3f} {z:>7.2f}")
    (mine, mine_error), (other, other_error) = ours_summary["density"], theirs_summary["density"]
    z = (mine - other) / np.hypot(mine_error, other_error)
    relative = np.mean(np.abs(mine - other) / other)
    print(f"density at 50 points: largest |z| {np.max(np.abs(z)):.2f} (at {grid[np.argmax(np.abs(z))]:.2f}), "
          f"mean relative difference {relative:.2%}")
    for g in range(0, grid.size, 5):
        print(f"  x = {grid[g]:<10.4g} {mine[g]:.4g} ± {mine_error[g]:.2g}   "
              f"{other[g]:.4g} ± {other_error[g]:.2g}   z {z[g]:6.2f}")
    print(f"seconds (whole call): ours {ours['wall']:.1f}, pymc {pymc['wall']:.1f}; divergent draws: "
          f"ours {int(ours['diverging'].sum())}, pymc {int(pymc['diverging'].sum())}")
    agree = worst <= 3 and np.max(np.abs(z)) <= 3.5
    print("verdict: " + ("the two posteriors agree within Monte-Carlo error" if agree else
                         "the posteriors DIFFER beyond Monte-Carlo error (|z| > 3, or > 3.5 for a density)"))
    return 0 if agree else 2


if __name__ == "__main__":
    sys.exit(main())
