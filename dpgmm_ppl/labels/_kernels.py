r"""Blocked kernels: every draw against every point, in bounded memory.

The responsibilities :math:`r_{snk} = p(z_n = k \mid x_n, \theta_s)` of all
draws at all points are never held at once: draws are padded into blocks and
points cut into chunks (:func:`_block_layout`), and one jitted ``lax.scan``
pass reduces them either over points (:func:`_per_draw`, a ``(S, K, J)``
projection per draw) or over draws (:func:`_per_point`, a ``(n, J)`` mixture
per point). Memory stays bounded by ``_BLOCK_ELEMENTS`` whatever the number of
draws and points.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dpgmm_ppl.mixtures import component_parameters

if TYPE_CHECKING:
    import numpy.typing as npt

    from dpgmm_ppl.result import Fit

_SITES = ("weights", "loc", "scale")

#: Draws x components x points (x dims) evaluated at once: about 10 MB of float32.
_BLOCK_ELEMENTS = 2_500_000
#: Points per chunk; 1024 keeps one block of draws in cache on a 2-core CPU.
_CHUNK_POINTS = 1024


class _Blocks(NamedTuple):
    """Draws padded into ``(num_blocks, block, K, ...)`` and points into chunks."""

    params: tuple  # weights, loc, scale, each (num_blocks, block, K[, D])
    draw_mask: jnp.ndarray  # (num_blocks, block): 1 for a real draw, 0 for padding
    x_chunks: jnp.ndarray  # (num_chunks, chunk) or (num_chunks, D, chunk)
    num_draws: int
    num_points: int


def _block_layout(weights, loc, scale, x, *, chunk=None):
    """Arrange flattened draws ``(S, K[, D])`` and points ``(n[, D])`` for the kernels."""
    num_draws, num_components = weights.shape
    num_points = x.shape[0]
    dim = 1 if x.ndim == 1 else x.shape[1]
    chunk = chunk or min(_CHUNK_POINTS, num_points)
    block = max(1, min(num_draws, _BLOCK_ELEMENTS // (num_components * chunk * dim)))
    pad_draws = -num_draws % block
    pad_points = -num_points % chunk

    def blocked(value):
        value = np.concatenate([value, np.repeat(value[:1], pad_draws, 0)])
        return jnp.asarray(value.reshape((-1, block) + value.shape[1:]))

    x = np.concatenate([x, np.repeat(x[:1], pad_points, 0)])
    x_chunks = x.reshape((-1, chunk) + x.shape[1:])
    if x.ndim == 2:
        x_chunks = np.swapaxes(x_chunks, 1, 2)  # points last: contiguous in the kernels
    mask = np.arange(num_draws + pad_draws) < num_draws
    return _Blocks(
        params=tuple(blocked(value) for value in (weights, loc, scale)),
        draw_mask=jnp.asarray(mask.reshape(-1, block), weights.dtype),
        x_chunks=jnp.asarray(x_chunks),
        num_draws=num_draws,
        num_points=num_points,
    )


def _chunked_rows(values, blocks):
    """Rows ``(n, J)`` zero-padded and cut like the points: ``(num_chunks, chunk, J)``."""
    num_chunks, chunk = blocks.x_chunks.shape[0], blocks.x_chunks.shape[-1]
    padded = np.zeros((num_chunks * chunk,) + values.shape[1:], values.dtype)
    padded[: values.shape[0]] = values
    return jnp.asarray(padded.reshape((num_chunks, chunk) + values.shape[1:]))


def _responsibilities(params, x_chunk):
    """``p(z = k | x_m, draw b)`` for a block of draws: ``(block, K, chunk)``.

    ``params`` are ``(weights, loc, spread)`` of :func:`~dpgmm_ppl.mixtures.component_parameters`:
    ``spread`` is a scale with ``loc``'s shape, or ``scale_tril`` ``(block, K, D, D)``.
    """
    weights, loc, scale = params
    tiny = jnp.finfo(weights.dtype).tiny
    if scale.ndim == loc.ndim + 1:  # full covariances: whiten by the Cholesky factors
        centred = x_chunk - loc[..., None]  # (block, K, D, chunk)
        z = jax.scipy.linalg.solve_triangular(scale, centred, lower=True)
        quadratic = jnp.sum(z * z, axis=2)
        log_scale = jnp.sum(jnp.log(jnp.diagonal(scale, axis1=-2, axis2=-1)), axis=-1)
    else:
        z = (x_chunk - loc[..., None]) / scale[..., None]  # x_chunk (chunk,) or (D, chunk)
        quadratic, log_scale = z * z, jnp.log(scale)
        if loc.ndim == 3:  # vector data: sum over the D axis
            quadratic, log_scale = jnp.sum(quadratic, axis=2), jnp.sum(log_scale, axis=-1)
    log_joint = (jnp.log(jnp.maximum(weights, tiny)) - log_scale)[..., None] - 0.5 * quadratic
    unnormalised = jnp.exp(log_joint - jnp.max(log_joint, axis=1, keepdims=True))
    return unnormalised / jnp.sum(unnormalised, axis=1, keepdims=True)


def _sampled_allocations(responsibilities, uniforms):
    """One-hot allocations ``(block, K, chunk)`` drawn by inverting each point's CDF.

    The CDF is summed one component at a time: XLA's ``cumsum`` over a short
    middle axis costs several times more here.
    """
    num_components = responsibilities.shape[1]
    cumulative = jnp.zeros_like(uniforms)
    index = jnp.zeros(uniforms.shape, jnp.int32)
    for component in range(num_components - 1):
        cumulative = cumulative + responsibilities[:, component]
        index = index + (cumulative <= uniforms)
    components = jnp.arange(num_components)[None, :, None]
    return (components == index[:, None, :]).astype(responsibilities.dtype)


@functools.partial(jax.jit, static_argnames=("is_sampled",))
def _project_draws(params, x_chunks, targets, rng_key, *, is_sampled):
    """``sum_n a[s, n, k] targets[n, j]`` per draw: ``(num_blocks, block, K, J)``.

    ``a`` is the responsibilities, or with ``is_sampled`` one-hot allocations
    drawn from them with keys folded from ``rng_key``, chunk and block index.
    """
    num_blocks = params[0].shape[0]

    def per_chunk(total, chunk):
        index, x_chunk, target = chunk

        def per_block(_, block):
            number, block_params = block
            left = _responsibilities(block_params, x_chunk)
            if is_sampled:
                key = jax.random.fold_in(jax.random.fold_in(rng_key, index), number)
                shape = (left.shape[0], left.shape[2])
                left = _sampled_allocations(left, jax.random.uniform(key, shape, left.dtype))
            size, num_components, points = left.shape
            product = left.reshape(-1, points) @ target
            return None, product.reshape(size, num_components, -1)

        _, products = jax.lax.scan(per_block, None, (jnp.arange(num_blocks), params))
        return total + products, None

    shape = params[0].shape + (targets.shape[-1],)
    indices = jnp.arange(x_chunks.shape[0])
    total, _ = jax.lax.scan(per_chunk, jnp.zeros(shape, targets.dtype), (indices, x_chunks, targets))
    return total


@jax.jit
def _mix_draws(params, x_chunks, mixers):
    """``sum_s r[s, n, :] @ mixers[s]`` per point: ``(num_chunks, chunk, J)``."""

    def per_chunk(_, x_chunk):
        def per_block(total, block):
            block_params, mixer = block
            resp = _responsibilities(block_params, x_chunk)
            return total + jnp.einsum("bkm,bkj->mj", resp, mixer), None

        init = jnp.zeros((x_chunk.shape[-1], mixers.shape[-1]), mixers.dtype)
        total, _ = jax.lax.scan(per_block, init, (params, mixers))
        return None, total

    _, totals = jax.lax.scan(per_chunk, None, x_chunks)
    return totals


@jax.jit
def _coclustering_sum(params, draw_mask, x_points):
    """``sum_s R_s R_s^T`` over real draws, ``(n, n)``, one block of draws at a time."""

    def per_block(total, block):
        block_params, mask = block
        resp = _responsibilities(block_params, x_points) * mask[:, None, None]
        flat = resp.reshape(-1, resp.shape[-1])
        return total + flat.T @ flat, None

    size = x_points.shape[-1]
    total, _ = jax.lax.scan(per_block, jnp.zeros((size, size), draw_mask.dtype), (params, draw_mask))
    return total


def _per_draw(blocks, targets, rng_key=None):
    """:func:`_project_draws` on ``targets (n, J)``, as a numpy ``(S, K, J)`` array."""
    is_sampled = rng_key is not None
    key = rng_key if is_sampled else jnp.zeros(2, jnp.uint32)
    out = _project_draws(blocks.params, blocks.x_chunks, _chunked_rows(targets, blocks), key,
                         is_sampled=is_sampled)
    out = np.asarray(out)
    return out.reshape((-1,) + out.shape[2:])[: blocks.num_draws]


def _per_point(blocks, mixers):
    """:func:`_mix_draws` with ``mixers (S, K, J)``, as a numpy ``(n, J)`` array."""
    padded = np.zeros(blocks.draw_mask.shape + mixers.shape[1:], mixers.dtype)
    padded.reshape((-1,) + mixers.shape[1:])[: blocks.num_draws] = mixers
    out = np.asarray(_mix_draws(blocks.params, blocks.x_chunks, jnp.asarray(padded)))
    return out.reshape((-1, out.shape[-1]))[: blocks.num_points]


def _mean_responsibilities(blocks, num_components, dtype):
    """Responsibilities averaged over draws, ``(n, K)``."""
    identity = np.broadcast_to(np.eye(num_components, dtype=dtype) / blocks.num_draws,
                               (blocks.num_draws, num_components, num_components))
    return _per_point(blocks, np.ascontiguousarray(identity))


def _flat_draws(fit: Fit, dtype: npt.DTypeLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``weights``, ``loc`` and the spread (``scale``, or ``scale_tril`` for full
    covariances) with (chain, draw) flattened, as numpy ``dtype``."""
    weights, loc, spread = (
        np.asarray(value, dtype).reshape((-1,) + np.shape(value)[2:])
        for value in component_parameters(fit.samples)
    )
    return weights, loc, spread


def _prepared_points(fit: Fit, x: npt.ArrayLike | None) -> tuple[np.ndarray, np.dtype]:
    """``x`` (or the data) checked, and the float dtype the kernels run in."""
    x = fit.data if x is None else fit._check_points(x)
    dtype = jax.dtypes.canonicalize_dtype(np.result_type(x.dtype, np.float32))
    return np.asarray(x, dtype), dtype
