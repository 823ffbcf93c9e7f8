r"""Gaussian variational families on a flat unconstrained vector.

Each family is a :class:`Guide` of pure functions of its parameters:
``init``, ``sample`` (reparameterised, :math:`z = m + L\varepsilon`),
``entropy`` (exact) and ``mean``.

``"diagonal"``
    mean and one scale per coordinate, :math:`L = \operatorname{diag}(s)`.
``"lowrank"``
    :math:`\Sigma = W W^\top + \operatorname{diag}(d^2)`, ``W`` of shape
    ``(dim, rank)``; the entropy by the matrix determinant lemma.
``"full"``
    a Cholesky factor with a positive diagonal.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["GUIDES", "INIT_SCALE", "Guide", "make_guide"]

#: The variational families, by name.
GUIDES = ("diagonal", "lowrank", "full")
#: Initial standard deviation of every coordinate. Small, so the first steps
#: stay near the k-means++ seed; on the seed data 0.01 to 0.1 fitted alike.
INIT_SCALE = 0.05


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


def make_guide(guide: str, dim: int, *, rank: int = 4) -> Guide:
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
