"""NUTS's options: their checks, the defaults by data size, the mass matrix, the chains' layout.

The measurements behind each choice are in ``benchmarks/README.md``
(``nuts_ess.py``) and ``docs/backends.md``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import numpy as np
from numpyro.infer.hmc_util import build_adaptation_schedule

from dpgmm_ppl._validation import check_parameterization, check_positive_int
from dpgmm_ppl.diagnostics import slow_chain_problems, treedepth_shares
from dpgmm_ppl.infer._progress import check_progress_bar

__all__ = ["CHAIN_METHODS", "MANY_POINTS", "check_split_merge", "resolve_chain_method",
           "resolve_dense_mass",
           "size_defaults", "validate_options", "warn_of_centered_chart",
           "warn_on_depth_bound", "warn_on_divergences", "check_energy_tolerance"]

#: ``chain_method`` values of NUTS (those of :class:`numpyro.infer.MCMC`).
CHAIN_METHODS = ("parallel", "sequential", "vectorized")

#: Starting inverse mass matrices of the warmup (``init_inverse_mass``).
INIT_INVERSE_MASSES = ("identity", "hessian")

#: From this many points on, NUTS's defaults are those for many points and
#: many components (:func:`size_defaults`).
MANY_POINTS = 2_000


def resolve_chain_method(chain_method, num_chains, data=None):
    """Chains across devices when there are enough, unless the data already are.

    ``None`` picks ``"vectorized"`` for data sharded across devices (the
    chains then share them), ``"parallel"`` with a device per chain, and
    otherwise ``"sequential"`` on the CPU (chains in lockstep under ``vmap``
    wait for the deepest tree of them all) and ``"vectorized"`` on an
    accelerator. ``"parallel"`` with sharded data is refused.
    """
    sharded = isinstance(data, jax.Array) and len(data.sharding.device_set) > 1
    if chain_method is None:
        if sharded:
            return "vectorized"
        if jax.local_device_count() >= num_chains:
            return "parallel"
        return "sequential" if jax.default_backend() == "cpu" else "vectorized"
    if chain_method == "parallel" and sharded:
        raise ValueError(
            "chain_method='parallel' puts one chain on each device, but the data are "
            "sharded across devices (mesh=...); use chain_method='vectorized' or "
            "'sequential' with a mesh, or no mesh to spread the chains"
        )
    return chain_method


def size_defaults(
    num_data: int,
    parameterization: str,
    *,
    target_accept_prob: float | None,
    dense_mass: bool | str,
    max_tree_depth: int,
    max_warmup_tree_depth: int | None,
    centered_sticks: str | int | None,
) -> tuple[float, bool | str, int | None, str | int]:
    """The options left at their defaults, set by the number of points.

    Below :data:`MANY_POINTS` points: target acceptance 0.9, the dense mass
    matrix where the warmup can estimate it (``dense_mass="auto"``), warmup
    trees as deep as the sampling ones, every stick non-centred. From
    :data:`MANY_POINTS` on: target 0.85, a diagonal mass matrix, warmup trees
    of depth at most 8, and ``centered_sticks="auto"`` (the sticks the data
    pin down centred after a scouting warmup). The second setting is much
    faster per effective draw with many points and many components, and no
    better on small data sets, where it costs a second compilation
    (``docs/backends.md``). 2,000 is where 1 % of the data is the 20 points
    that :func:`~dpgmm_ppl.infer.nuts.centered_stick_count` asks of a stick.
    The target is 0.85 rather than NumPyro's 0.8: the divergences there come
    from a spare component taking a share of a cluster, and on the seed data
    at 25 components (four keys) the smaller steps cut them from 26 to 5 for
    about 0.7 to 0.9 times the effective draws per second
    (``benchmarks/README.md``, "Target acceptance 0.85").

    Examples
    --------
    >>> options = dict(target_accept_prob=None, dense_mass="auto", max_tree_depth=10,
    ...                max_warmup_tree_depth=None, centered_sticks=None)
    >>> size_defaults(82, "noncentered", **options)
    (0.9, 'auto', None, 0)
    >>> size_defaults(19_000, "noncentered", **options)
    (0.85, False, 8, 'auto')
    >>> size_defaults(19_000, "noncentered", **{**options, "target_accept_prob": 0.95})
    (0.95, False, 8, 'auto')
    """
    many = num_data >= MANY_POINTS
    if target_accept_prob is None:
        target_accept_prob = 0.85 if many else 0.9
    if dense_mass == "auto" and many:
        dense_mass = False
    if max_warmup_tree_depth is None and many:
        max_warmup_tree_depth = min(8, max_tree_depth)
    if centered_sticks is None:
        centered_sticks = "auto" if many and parameterization == "noncentered" else 0
    return target_accept_prob, dense_mass, max_warmup_tree_depth, centered_sticks


def resolve_dense_mass(
    dense_mass: bool | str, num_warmup: int, position: dict[str, Any]
) -> bool:
    """``dense_mass`` as a bool: ``"auto"`` is dense when the warmup can estimate it.

    NumPyro adapts the mass matrix at the end of each middle window of its
    warmup schedule, from that window's draws. A dense estimate from no more
    draws than the position has coordinates is singular, and in float32 its
    inverse overflows (every transition then diverges). ``"auto"`` therefore
    adapts a dense matrix only when the longest middle window has more draws
    than coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> position = {"loc": np.zeros(75)}
    >>> resolve_dense_mass("auto", 500, position), resolve_dense_mass("auto", 30, position)
    (True, False)
    """
    if dense_mass != "auto":
        return bool(dense_mass)
    windows = build_adaptation_schedule(num_warmup)[1:-1]
    longest = max((window.end - window.start + 1 for window in windows), default=0)
    num_coordinates = sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(position))
    return longest > num_coordinates


def warn_of_centered_chart():
    """NUTS's centred chart of the sticks fails simulation-based calibration: say so."""
    warnings.warn(
        "NUTS in the centred chart of the sticks (parameterization='centered') is kept "
        "for comparison: its draws of alpha are biased low when spare components are "
        "present (simulation-based calibration, benchmarks/sbc.py --charts: p < 0.0001 "
        "for alpha, the largest weight and the log-likelihood); the default "
        "parameterization='noncentered' passes.",
        UserWarning,
        stacklevel=5,
    )


def warn_on_divergences(diverging, target_accept_prob, dense_mass):
    """Warn once, with the count per chain and what to try, if any draw diverged."""
    count = int(np.sum(diverging))
    if not count:
        return
    per_chain = np.sum(diverging, axis=1).tolist()
    advice = [f"raise target_accept_prob (now {target_accept_prob})"]
    if not dense_mass:
        advice.append("set dense_mass=True")
    advice += [
        "use fewer num_components",
        "or reparameterise (for example, a stronger prior on the scales)",
    ]
    warnings.warn(
        f"NUTS: {count} divergent transition(s) after warmup "
        f"(per chain: {per_chain}) out of {diverging.size} draws; the posterior "
        "estimates may be biased. Try: " + ", ".join(advice) + ".",
        RuntimeWarning,
        stacklevel=4,
    )


def warn_on_depth_bound(reached_max_treedepth, max_tree_depth):
    """Warn once, naming the chains, if a chain's trees often reached the depth bound.

    A chain at the bound in more than :data:`~dpgmm_ppl.diagnostics.MAX_TREEDEPTH_SHARE`
    of its draws adapted a step size far below the others' (see
    :mod:`dpgmm_ppl.diagnostics` for what that usually means here).
    """
    problems = slow_chain_problems(treedepth_shares(reached_max_treedepth))
    if problems:
        warnings.warn(
            f"NUTS (max_tree_depth={max_tree_depth}): " + "; ".join(problems)
            + ". Such a chain moves slowly, and often sits in another arrangement of the "
            "components than other chains find: look at its components (dpgmm_ppl.labels), "
            "compare several chains (Fit.diagnostics()), or give it more warmup.",
            RuntimeWarning,
            stacklevel=4,
        )


def check_split_merge(split_merge, density, parameterization):
    """``split_merge`` as an int, refused where the jumps do not apply."""
    if not split_merge:
        return 0
    if density.covariance != "diag" and density.init_position["loc"].ndim > 1:
        raise ValueError(
            "split_merge needs covariance='diag' (or 1-d data), "
            f"got covariance={density.covariance!r} with split_merge={split_merge}"
        )
    if parameterization != "noncentered":
        raise ValueError(
            "split_merge needs parameterization='noncentered', "
            f"got parameterization={parameterization!r} with split_merge={split_merge}"
        )
    return int(split_merge)


def check_energy_tolerance(energy_tolerance):
    """Refuse an ``energy_tolerance`` that is not ``None`` or a finite float > 0."""
    if energy_tolerance is None:
        return
    if isinstance(energy_tolerance, (bool, np.bool_)) or not isinstance(
        energy_tolerance, (int, float, np.integer, np.floating)
    ):
        raise TypeError(
            "energy_tolerance must be None or a float > 0, got "
            f"{energy_tolerance!r} of type {type(energy_tolerance).__name__}"
        )
    if not (np.isfinite(energy_tolerance) and energy_tolerance > 0):
        raise ValueError(
            f"energy_tolerance must be a finite float > 0 (or None), got {energy_tolerance}"
        )


def validate_options(options, *, default_centered_sticks):
    """Refuse NUTS options of the wrong type or range, naming the option."""
    check_positive_int("num_samples", options["num_samples"])
    check_positive_int("num_warmup", options["num_warmup"], minimum=0)
    check_positive_int("max_tree_depth", options["max_tree_depth"])
    if options["max_warmup_tree_depth"] is not None:
        check_positive_int("max_warmup_tree_depth", options["max_warmup_tree_depth"])
    if options["init_inverse_mass"] not in INIT_INVERSE_MASSES:
        raise ValueError(
            f"init_inverse_mass must be one of {INIT_INVERSE_MASSES}, "
            f"got {options['init_inverse_mass']!r}"
        )
    check_positive_int("num_init_steps", options["num_init_steps"], minimum=0)
    check_positive_int("split_merge", options["split_merge"], minimum=0)
    target = options["target_accept_prob"]
    if target is not None and (
        isinstance(target, (bool, np.bool_)) or not isinstance(target, (int, float, np.floating))
    ):
        raise TypeError(
            f"target_accept_prob must be None or a float in (0, 1), got {target!r} "
            f"of type {type(target).__name__}"
        )
    if target is not None and not 0.0 < target < 1.0:
        raise ValueError(f"target_accept_prob must be in (0, 1), got {target}")
    check_energy_tolerance(options["energy_tolerance"])
    if not (isinstance(options["dense_mass"], (bool, np.bool_)) or options["dense_mass"] == "auto"):
        raise TypeError(
            f"dense_mass must be True, False or 'auto', got {options['dense_mass']!r}"
        )
    check_parameterization(options["parameterization"])
    centered_sticks = options["centered_sticks"]
    # The default is valid in either chart, whatever it is: it must not make
    # parameterization="centered" fail on its own.
    default = default_centered_sticks
    if not (type(centered_sticks) is type(default) and centered_sticks == default):
        if isinstance(centered_sticks, str) and centered_sticks != "auto":
            raise ValueError(
                f"centered_sticks must be 'auto' or an integer >= 0, got {centered_sticks!r}"
            )
        if centered_sticks != "auto":
            check_positive_int("centered_sticks", centered_sticks, minimum=0)
        # In the centred chart every stick is centred already: 0 asks for
        # nothing more; a count or "auto" is a choice that chart cannot make.
        if options["parameterization"] == "centered" and centered_sticks != 0:
            raise ValueError(
                "centered_sticks chooses the chart of each stick within "
                "parameterization='noncentered'; with parameterization='centered' "
                f"every stick is centred already, got centered_sticks={centered_sticks!r} "
                "(expected 0, or parameterization='noncentered')"
            )
    check_progress_bar(options["progress_bar"])
    if options["chain_method"] not in (None,) + CHAIN_METHODS:
        raise ValueError(
            "chain_method must be None, 'parallel', 'sequential' or 'vectorized', "
            f"got {options['chain_method']!r}"
        )
