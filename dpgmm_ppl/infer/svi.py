r"""Stochastic variational inference: a Gaussian family on the unconstrained space.

The variational family :math:`q_\phi(z)` is a Gaussian on the flattened
unconstrained position :math:`z` of the shared
:class:`~dpgmm_ppl.density.LogDensity` (``jax.flatten_util.ravel_pytree``),
reparameterised as :math:`z = m + L\varepsilon`. Because ``potential_fn``
already carries the log-Jacobian of the constraining transforms, the negative
ELBO needs nothing else:

.. math::

    \mathcal{L}(\phi) = \mathbb{E}_{q_\phi}\big[U(z)\big] - \mathbb{H}[q_\phi],
    \qquad U(z) = -\log p(x, T(z)) - \log\lvert\det J_T(z)\rvert .

The expectation is a Monte-Carlo average over ``num_particles``
reparameterised draws; the entropy is exact. This is the objective of
NumPyro's ``Trace_ELBO`` with ``AutoNormal`` (``guide="diagonal"``),
``AutoLowRankMultivariateNormal`` (``"lowrank"``) or
``AutoMultivariateNormal`` (``"full"``), whose guides live on the same
unconstrained space through the same ``biject_to`` transforms.

Families (:func:`make_guide`), a :class:`Guide` of pure functions each:

``"diagonal"``
    mean and one scale per coordinate, :math:`L = \operatorname{diag}(s)`.
``"lowrank"``
    :math:`\Sigma = W W^\top + \operatorname{diag}(d^2)`, ``W`` of shape
    ``(dim, rank)``; the entropy by the matrix determinant lemma.
``"full"``
    a Cholesky factor with a positive diagonal.

Every restart (chain) starts from its own k-means++ seeding with small
scales, runs the optimiser inside ``lax.scan`` (any
``optax.GradientTransformation``), then draws ``num_samples`` positions from
its fitted family.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from dpgmm_ppl._validation import check_positive_int
from dpgmm_ppl.infer.base import Backend, BackendOutput
from dpgmm_ppl.infer.map import _history_steps, _resolve_chain_method, _tree_all_finite
from dpgmm_ppl.initialization import kmeanspp_init

__all__ = ["SVI", "Guide", "SVIState", "SVIInfo", "make_guide", "negative_elbo", "run_svi"]

#: The variational families, by name.
GUIDES = ("diagonal", "lowrank", "full")
#: Initial standard deviation of every coordinate.
INIT_SCALE = 0.05
#: Draws whose potential is evaluated at once after fitting.
_DRAW_BATCH = 50


class Guide(NamedTuple):
    """A reparameterised Gaussian family on ``R^dim``, as pure functions.

    ``init(mean) -> params``; ``sample(params, rng_key, num) -> (num, dim)``;
    ``entropy(params) -> ()``; ``mean(params) -> (dim,)``;
    ``covariance(params) -> (dim, dim)``.
    """

    name: str
    init: Callable
    sample: Callable
    entropy: Callable
    mean: Callable
    covariance: Callable


def _normal_entropy_constant(dim):
    return 0.5 * dim * (1.0 + math.log(2.0 * math.pi))


def _diagonal(dim):
    def init(mean):
        return {"loc": mean, "log_scale": jnp.full_like(mean, math.log(INIT_SCALE))}

    def sample(params, rng_key, num):
        eps = jax.random.normal(rng_key, (num, dim), params["loc"].dtype)
        return params["loc"] + jnp.exp(params["log_scale"]) * eps

    def entropy(params):
        return _normal_entropy_constant(dim) + jnp.sum(params["log_scale"])

    def covariance(params):
        return jnp.diag(jnp.exp(2.0 * params["log_scale"]))

    return Guide("diagonal", init, sample, entropy, lambda p: p["loc"], covariance)


def _lowrank(dim, rank):
    def init(mean):
        # W = 0 as in NumPyro's AutoLowRankMultivariateNormal; its gradient
        # E[grad U(z) eps^T] is not zero, so the factor grows from the first step.
        return {
            "loc": mean,
            "log_scale": jnp.full_like(mean, math.log(INIT_SCALE)),
            "cov_factor": jnp.zeros((dim, rank), mean.dtype),
        }

    def sample(params, rng_key, num):
        key_factor, key_diag = jax.random.split(rng_key)
        dtype = params["loc"].dtype
        eps_factor = jax.random.normal(key_factor, (num, rank), dtype)
        eps_diag = jax.random.normal(key_diag, (num, dim), dtype)
        return (
            params["loc"]
            + eps_factor @ params["cov_factor"].T
            + jnp.exp(params["log_scale"]) * eps_diag
        )

    def entropy(params):
        # log det(W W^T + D^2) = log det D^2 + log det(I + W^T D^-2 W).
        scaled = params["cov_factor"] * jnp.exp(-params["log_scale"])[:, None]
        capacitance = jnp.eye(rank, dtype=scaled.dtype) + scaled.T @ scaled
        log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(jnp.linalg.cholesky(capacitance))))
        return _normal_entropy_constant(dim) + jnp.sum(params["log_scale"]) + 0.5 * log_det

    def covariance(params):
        factor = params["cov_factor"]
        return factor @ factor.T + jnp.diag(jnp.exp(2.0 * params["log_scale"]))

    return Guide("lowrank", init, sample, entropy, lambda p: p["loc"], covariance)


def _full(dim):
    def scale_tril(params):
        return jnp.tril(params["tril"], -1) + jnp.diag(jnp.exp(params["log_diag"]))

    def init(mean):
        return {
            "loc": mean,
            "log_diag": jnp.full_like(mean, math.log(INIT_SCALE)),
            "tril": jnp.zeros((dim, dim), mean.dtype),
        }

    def sample(params, rng_key, num):
        eps = jax.random.normal(rng_key, (num, dim), params["loc"].dtype)
        return params["loc"] + eps @ scale_tril(params).T

    def entropy(params):
        return _normal_entropy_constant(dim) + jnp.sum(params["log_diag"])

    def covariance(params):
        tril = scale_tril(params)
        return tril @ tril.T

    return Guide("full", init, sample, entropy, lambda p: p["loc"], covariance)


def make_guide(guide, dim, *, rank=4):
    """The Gaussian family named ``guide`` on ``R^dim``.

    Parameters
    ----------
    guide : {"diagonal", "lowrank", "full"}
        The family.
    dim : int
        Number of unconstrained coordinates.
    rank : int
        Rank of ``W`` for ``"lowrank"``; ignored otherwise.

    Returns
    -------
    Guide

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> family = make_guide("full", 3)
    >>> params = family.init(jnp.zeros(3))
    >>> family.sample(params, jax.random.PRNGKey(0), 5).shape
    (5, 3)
    """
    if guide == "diagonal":
        return _diagonal(dim)
    if guide == "lowrank":
        return _lowrank(dim, rank)
    if guide == "full":
        return _full(dim)
    raise ValueError(f"guide must be one of {list(GUIDES)}, got {guide!r}")


def negative_elbo(params, rng_key, data, *, guide, potential_fn, unravel, num_particles=1):
    """Monte-Carlo negative ELBO: the mean potential over draws minus the entropy.

    Parameters
    ----------
    params : dict
        Parameters of ``guide``.
    rng_key : PRNGKey
        Seeds the ``num_particles`` reparameterised draws.
    data : Array
        Passed on to ``potential_fn``.
    guide : Guide
        The family.
    potential_fn : Callable[[dict, Array], Array]
        ``LogDensity.potential_fn``.
    unravel : Callable
        Maps a flat vector to a position dict (from ``ravel_pytree``).
    num_particles : int
        Draws in the Monte-Carlo average.

    Returns
    -------
    Array
        A scalar.
    """
    draws = guide.sample(params, rng_key, num_particles)
    if num_particles == 1:
        # No particle axis: on XLA:CPU a size-1 batch axis slows the reductions down.
        energy = potential_fn(unravel(draws[0]), data)
    else:
        energy = jnp.mean(jax.vmap(lambda z: potential_fn(unravel(z), data))(draws))
    return energy - guide.entropy(params)


class SVIState(NamedTuple):
    """What the next optimisation step needs."""

    params: dict
    opt_state: Any


class SVIInfo(NamedTuple):
    """Diagnostics of one step, stacked by ``lax.scan``."""

    loss: Any
    is_finite: Any


def _make_step(guide, potential_fn, unravel, optimizer, num_particles):
    def loss_fn(params, rng_key, data):
        return negative_elbo(
            params, rng_key, data, guide=guide, potential_fn=potential_fn,
            unravel=unravel, num_particles=num_particles,
        )

    value_and_grad = jax.value_and_grad(loss_fn)

    def step(state, rng_key, data):
        loss, grad = value_and_grad(state.params, rng_key, data)
        updates, opt_state = optimizer.update(grad, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # A non-finite loss or gradient (a rare far-tail draw) skips the step.
        is_finite = jnp.isfinite(loss) & _tree_all_finite(grad)
        new_state = jax.tree_util.tree_map(
            lambda new, old: jnp.where(is_finite, new, old), SVIState(params, opt_state), state
        )
        return new_state, SVIInfo(loss, is_finite)

    return step


def _make_chain_runner(density, guide, unravel, optimizer, options):
    step = _make_step(guide, density.potential_fn, unravel, optimizer, options["num_particles"])
    num_steps, history_every = options["num_steps"], options["history_every"]
    num_frames, remainder = divmod(num_steps, history_every)

    def run_chain(mean, rng_key, data):
        key_fit, key_draws = jax.random.split(rng_key)

        def one_step(carry, _):
            state, index = carry
            state, info = step(state, jax.random.fold_in(key_fit, index), data)
            return (state, index + 1), info.loss

        def block(carry, _):
            carry, losses = jax.lax.scan(one_step, carry, None, length=history_every)
            return carry, (losses, guide.mean(carry[0].params))

        params = guide.init(mean)
        carry = (SVIState(params, optimizer.init(params)), jnp.zeros((), jnp.int32))
        carry, (losses, frames) = jax.lax.scan(block, carry, None, length=num_frames)
        losses = losses.reshape(-1)
        if remainder:
            carry, tail = jax.lax.scan(one_step, carry, None, length=remainder)
            losses = jnp.concatenate([losses, tail])
            frames = jnp.concatenate([frames, guide.mean(carry[0].params)[None]])
        params = carry[0].params
        draws = guide.sample(params, key_draws, options["num_samples"])
        potential = jax.lax.map(
            lambda z: density.potential_fn(unravel(z), data), draws, batch_size=_DRAW_BATCH
        )
        return jax.vmap(unravel)(draws), -potential, losses, jax.vmap(unravel)(frames)

    return run_chain


def run_svi(
    rng_key,
    density,
    *,
    num_chains,
    guide,
    rank,
    optimizer,
    num_steps,
    num_particles,
    num_samples,
    history_every,
    chain_method,
):
    """Fit a Gaussian family on the unconstrained space by maximising the ELBO.

    Parameters
    ----------
    rng_key : PRNGKey
        Seeds the k-means++ start of each restart, the Monte-Carlo draws of
        every step and the final draws; the same key gives the same output.
    density : LogDensity
        The shared log-density.
    num_chains : int
        Independent restarts.
    guide : {"diagonal", "lowrank", "full"}
        The variational family (see :func:`make_guide`).
    rank : int
        Rank of the low-rank factor, in ``[1, dim)``; used by ``"lowrank"``.
    optimizer : optax.GradientTransformation or None
        ``None``: Adam whose learning rate decays from 0.01 to 0.001 over
        ``num_steps`` (cosine); the small final rate averages out the
        step-to-step Monte-Carlo noise in the mean.
    num_steps : int
        Optimisation steps per restart.
    num_particles : int
        Reparameterised draws per ELBO estimate.
    num_samples : int
        Draws per restart from the fitted family.
    history_every : int
        Record the constrained mean every this many steps (and at the last).
    chain_method : {"vectorized", "sequential", None}
        As for :func:`~dpgmm_ppl.infer.map.run_map`: ``None`` is
        ``"sequential"`` on the CPU and ``"vectorized"`` elsewhere.

    Returns
    -------
    BackendOutput
        ``positions`` of shape ``(num_chains, num_samples, ...)``; sample
        stats ``lp`` (minus the potential of each draw) and ``loss`` (the
        last step's loss, repeated); ``losses`` of shape
        ``(num_chains, num_steps)``; ``history`` the constrained means.

    Examples
    --------
    >>> import numpy as np, dpgmm_ppl
    >>> x = np.concatenate([np.linspace(-6, -4, 50), np.linspace(4, 6, 50)])
    >>> result = dpgmm_ppl.fit(x, backend="svi", num_components=4, num_steps=1000,
    ...                        num_samples=200)
    >>> result.samples["loc"].shape, result.losses.shape
    ((1, 200, 4), (1, 1000))
    >>> heavy = result.samples["weights"][0].mean(0) > 0.2
    >>> sorted(np.round(result.samples["loc"][0].mean(0)[heavy]).tolist())
    [-5.0, 5.0]
    """
    flat, unravel = ravel_pytree(density.init_position)
    dim = flat.shape[0]
    if guide == "lowrank" and not 1 <= rank < dim:
        raise ValueError(
            f"rank must be in [1, {dim}) for this model's {dim} unconstrained "
            f"coordinates, got {rank}"
        )
    if optimizer is None:
        optimizer = optax.adam(optax.cosine_decay_schedule(0.01, num_steps, alpha=0.1))
    family = make_guide(guide, dim, rank=rank)
    options = {
        "num_steps": num_steps, "num_particles": num_particles,
        "num_samples": num_samples, "history_every": history_every,
    }
    key_init, key_run = jax.random.split(rng_key)
    seed = jax.vmap(
        lambda key: kmeanspp_init(key, density.data, density.num_components, density.priors)
    )
    init_positions = jax.vmap(density.unconstrain_fn)(jax.jit(seed)(jax.random.split(key_init, num_chains)))
    init_means = jax.vmap(lambda position: ravel_pytree(position)[0])(init_positions)
    chain_keys = jax.random.split(key_run, num_chains)
    run_chain = _make_chain_runner(density, family, unravel, optimizer, options)
    if _resolve_chain_method(chain_method) == "vectorized":
        run_all = jax.jit(jax.vmap(run_chain, in_axes=(0, 0, None)))
    else:
        run_all = jax.jit(
            lambda means, keys, data: jax.lax.map(lambda args: run_chain(*args, data), (means, keys))
        )

    start = time.perf_counter()
    compiled = run_all.lower(init_means, chain_keys, density.data).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    positions, lp, losses, frames = jax.block_until_ready(
        compiled(init_means, chain_keys, density.data)
    )
    run_seconds = time.perf_counter() - start

    history = jax.jit(jax.vmap(jax.vmap(density.constrain_fn)))(frames)
    return BackendOutput(
        positions=positions,
        sample_stats={"lp": lp, "loss": jnp.broadcast_to(losses[:, -1:], lp.shape)},
        losses=losses,
        history=history,
        history_steps=_history_steps(num_steps, history_every),
        timing={"compile_seconds": compile_seconds, "run_seconds": run_seconds},
    )


def _validate(options):
    if options["guide"] not in GUIDES:
        raise ValueError(f"guide must be one of {list(GUIDES)}, got {options['guide']!r}")
    optimizer = options["optimizer"]
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation (for example "
            f"optax.adam(0.01)), got {type(optimizer).__name__}"
        )
    for name in ("rank", "num_steps", "num_particles", "num_samples", "history_every"):
        check_positive_int(name, options[name])
    if options["chain_method"] not in (None, "vectorized", "sequential"):
        raise ValueError(
            "chain_method must be None, 'vectorized' or 'sequential', "
            f"got {options['chain_method']!r}"
        )


SVI = Backend(
    name="svi",
    defaults={
        "guide": "diagonal",
        "rank": 4,
        "optimizer": None,
        "num_steps": 5_000,
        "num_particles": 1,
        "num_samples": 1_000,
        "history_every": 50,
        "chain_method": None,
    },
    run=run_svi,
    validate=_validate,
)
