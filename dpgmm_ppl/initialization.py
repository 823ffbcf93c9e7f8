"""Data-driven starting points for the backends: k-means++ seeding.

Starting every restart from unit normals (as the notebook does) leaves most
components far from the data and some restarts in poor optima. Seeding the
locations by k-means++ (Arthur & Vassilvitskii 2007), the scales from the
points nearest each seed and the weights from their counts starts every
restart near a sensible mixture, and different keys still give different
restarts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from dpgmm_ppl.priors import Priors

__all__ = ["kmeanspp_init"]


def _block_layout(num_rows, row_counts):
    """For rows in blocks of real rows then padding: each row's index among the
    real rows (in block order), whether it is real, and the map back."""
    block = num_rows // row_counts.shape[0]
    index = jnp.arange(num_rows)
    offsets = jnp.cumsum(row_counts) - row_counts
    valid = (index % block) < row_counts[index // block]
    logical = offsets[index // block] + index % block

    def position(real_index):
        which = jnp.sum(real_index >= jnp.cumsum(row_counts))
        return which * block + real_index - offsets[which]

    return logical, valid, position


def _kmeanspp_centers(rng_key, points, num_components, num_valid, valid, row_counts=None):
    """k-means++ seeding: each new centre is drawn with probability ~ squared distance.

    Only the first ``num_valid`` points (all where ``valid`` is ``None``) are
    drawn; the draws are the same as on those points alone. With
    ``row_counts``, the real rows are the first ``row_counts[b]`` of each of
    its equal blocks ``b``, and the draws are those on the real rows alone,
    in block order (the Gumbel noise of :func:`jax.random.categorical` is
    taken at each row's index among them).
    """
    keys = jax.random.split(rng_key, num_components)
    if row_counts is not None:
        logical, valid, position = _block_layout(points.shape[0], row_counts)
        # categorical(key, logits) is argmax(gumbel(key, logits.shape) + logits),
        # and a draw of threefry's bits depends on its index only, not on the shape.
        draw = lambda key, logits: jnp.argmax(
            jnp.where(valid, jax.random.gumbel(key, (points.shape[0],), logits.dtype)[
                jnp.where(valid, logical, 0)], 0.0) + logits
        )
        first = points[position(jax.random.randint(keys[0], (), 0, num_valid))]
    else:
        draw = jax.random.categorical
        first = points[jax.random.randint(keys[0], (), 0, num_valid)]
    centers = jnp.zeros((num_components, points.shape[1]), points.dtype).at[0].set(first)
    sq_dist = jnp.sum((points - first) ** 2, axis=-1)
    tiny = jnp.finfo(points.dtype).tiny

    def add_center(k, carry):
        centers, sq_dist = carry
        logits = jnp.log(sq_dist + tiny)
        if valid is not None:
            logits = jnp.where(valid, logits, -jnp.inf)
        index = draw(keys[k], logits)
        center = points[index]
        sq_dist = jnp.minimum(sq_dist, jnp.sum((points - center) ** 2, axis=-1))
        return centers.at[k].set(center), sq_dist

    centers, _ = jax.lax.fori_loop(1, num_components, add_center, (centers, sq_dist))
    return centers


def kmeanspp_init(
    rng_key: jax.Array,
    data: jax.Array | np.ndarray,
    num_components: int,
    priors: Priors,
    num_data: int | jax.Array | None = None,
    row_counts: jax.Array | None = None,
    num_active: int | jax.Array | None = None,
) -> dict[str, jax.Array]:
    """Constrained starting values of every latent site, seeded by k-means++.

    Parameters
    ----------
    rng_key : PRNGKey
        Different keys give different seedings (the restarts of a backend).
    data : Float[Array, "N"] or Float[Array, "N D"]
        Observations.
    num_components : int
        Truncation level K.
    priors : Priors
        Resolved priors; the prior mode of a scale fills in for components
        that are seeded with fewer than two points.
    num_data : int or Array, optional
        The rows of ``data`` that are real; the rest (padding that gives data
        sets of nearby sizes one shape) are never drawn or counted, and the
        seeding is the one of the real rows alone. ``None``: every row.
    row_counts : Int[Array, "blocks"], optional
        Rows spread over processes: ``data`` is made of equal blocks, one
        per process, each its real rows followed by padding; ``row_counts``
        are their real rows and ``num_data`` their sum. The seeding is the
        one of the real rows, in block order, alone.
    num_active : int or Array, optional
        Only the first ``num_active`` centres of the seeding (themselves a
        k-means++ seeding of that many) take points; the other components
        start empty, at the smallest weight and the prior's mode of a scale.
        May be traced. ``None``: all ``num_components``.

    Returns
    -------
    dict
        ``alpha`` (1.0), ``weights`` (K,), ``loc`` and ``scale`` with the
        model's shapes. Components are sorted by the number of points nearest
        them, largest first, the order the stick-breaking prior favours.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from dpgmm_ppl.priors import Priors
    >>> data = jnp.array([-5.0, -5.1, -4.9, 5.0, 5.1, 4.9])
    >>> init = kmeanspp_init(jax.random.PRNGKey(0), data, 2, Priors().resolve(data))
    >>> sorted(round(float(v)) for v in init["loc"])
    [-5, 5]
    """
    data = jnp.asarray(data)
    points = data[:, None] if data.ndim == 1 else data
    num_rows = points.shape[0]
    num_valid: int | jax.Array
    if row_counts is not None:
        num_valid = jnp.sum(row_counts)
        valid = _block_layout(num_rows, row_counts)[1]
    elif num_data is None or (isinstance(num_data, int) and num_data >= num_rows):
        num_valid, valid = num_rows, None
    else:
        num_valid = jnp.minimum(num_data, num_rows)
        valid = jnp.arange(num_rows) < num_valid
    centers = _kmeanspp_centers(rng_key, points, num_components, num_valid, valid, row_counts)
    sq_dist = jnp.sum((points[:, None, :] - centers[None]) ** 2, axis=-1)
    if num_active is not None:
        sq_dist = jnp.where(jnp.arange(num_components) < num_active, sq_dist, jnp.inf)
    nearest = jnp.argmin(sq_dist, axis=-1)
    one_hot = jax.nn.one_hot(nearest, num_components, dtype=points.dtype)
    if valid is not None:
        one_hot = one_hot * valid[:, None]
    counts = one_hot.sum(axis=0)
    sq_dev = one_hot.T @ (points**2) - 2 * centers * (one_hot.T @ points) + counts[:, None] * centers**2
    prior_mode = jnp.broadcast_to(
        priors.scale_rate / (priors.scale_shape + 1.0), (points.shape[1],)
    )
    # One pseudo-observation at the prior mode keeps singleton seeds away from
    # zero; the floor covers priors whose mode is (nearly) zero.
    spread = jnp.std(points, axis=0, where=None if valid is None else valid[:, None])
    floor = 1e-2 * jnp.where(spread > 0, spread, 1.0)
    scale = jnp.sqrt((jnp.maximum(sq_dev, 0.0) + prior_mode**2) / (counts[:, None] + 1.0))
    scale = jnp.maximum(scale, floor)
    order = jnp.argsort(-counts)
    weights = (counts[order] + 1.0) / (counts.sum() + num_components)
    loc, scale = centers[order], scale[order]
    if data.ndim == 1:
        loc, scale = loc[:, 0], scale[:, 0]
    return {
        "alpha": jnp.ones((), points.dtype),
        "weights": weights,
        "loc": loc,
        "scale": scale,
    }
