"""The truncated stick-breaking DP-GMM as a NumPyro model."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from dpgmm_ppl.covariance import (
    COVARIANCE_STRUCTURES,
    check_fixed_scale,
    covariance_structure,
    structure_for,
)
from dpgmm_ppl.distributions import GaussianMixture, StickBreakingWeights
from dpgmm_ppl.priors import Priors

if TYPE_CHECKING:
    from jax.typing import ArrayLike

    from dpgmm_ppl.covariance import CovarianceStructure

__all__ = ["COVARIANCE_TYPES", "dpgmm"]

#: Covariance structures of the components (the ``covariance`` argument), the
#: names of :data:`dpgmm_ppl.covariance.COVARIANCE_STRUCTURES`.
COVARIANCE_TYPES = tuple(COVARIANCE_STRUCTURES)


def dpgmm(
    data: ArrayLike | None = None,
    *,
    num_components: int = 25,
    priors: Priors | None = None,
    covariance: str | CovarianceStructure = "diag",
    num_data: int | None = None,
    dim: int | None = None,
    mask: ArrayLike | None = None,
) -> None:
    r"""Dirichlet-process Gaussian mixture, truncated at ``num_components``.

    .. math::

        \alpha &\sim \mathrm{Gamma}(a_\alpha, b_\alpha), \qquad
        w \mid \alpha \sim \mathrm{StickBreaking}(\alpha, K) \\
        \mu_k &\sim \mathcal{N}(m, s), \qquad
        \sigma_k \sim \mathrm{InverseGamma}(a_\sigma, b_\sigma) \\
        x_n \mid w, \mu, \sigma &\sim \textstyle\sum_k w_k\,
            \mathcal{N}(\mu_k, \Sigma_k)

    Sample sites: ``alpha`` (scalar), ``weights`` (K,), ``loc`` ((K,) for 1-d
    data, (K, D) otherwise), the scales, and ``obs`` under the plate
    ``data``. The component labels are summed out, so every site is continuous
    and the model runs as it is under ``numpyro.infer.MCMC``, ``SVI`` and
    ``Predictive``.

    The covariance :math:`\Sigma_k` of each component (for 1-d data the
    three coincide with ``"diag"``):

    - ``"diag"``: :math:`\operatorname{diag}\sigma_k^2`, site ``scale`` of
      shape (K, D), each entry with the inverse-gamma prior;
    - ``"spherical"``: :math:`\sigma_k^2 I`, site ``scale`` of shape (K,),
      with the inverse-gamma prior at the mean of ``scale_rate`` over the
      dimensions;
    - ``"full"``: :math:`L_k L_k^\top` with
      :math:`L_k = \operatorname{diag}(\sigma_k)\, C_k`, where ``scale``
      (K, D) are the standard deviations of the dimensions as for
      ``"diag"`` and ``corr_cholesky`` (K, D, D) is the Cholesky factor of
      the correlation matrix, with NumPyro's ``LKJCholesky`` prior of
      concentration :meth:`Priors.lkj_concentration
      <dpgmm_ppl.Priors.lkj_concentration>`; ``scale_tril`` (K, D, D) is
      :math:`L_k`, a deterministic site. The likelihood is evaluated through
      it (:class:`~dpgmm_ppl.GaussianMixture` with ``scale_tril``).

    Parameters
    ----------
    data : Float[Array, "N"] or Float[Array, "N D"], optional
        Observations. ``None`` samples from the prior predictive.
    num_components : int
        Truncation level K.
    priors : Priors, optional
        Hyperparameters; fields left as ``None`` are set from ``data``
        (see :class:`~dpgmm_ppl.Priors`), or from a standardised scale
        (mean 0, standard deviation 1) when ``data`` is ``None``.
    covariance : {"diag", "spherical", "full"}
        The covariance structure of the components (above).
    num_data : int, optional
        When ``data`` is ``None``: the number of observations to draw. When
        ``data`` is given: the size of the whole data set of which ``data``
        is a minibatch; the log-likelihood of the batch is then scaled by
        ``num_data / len(data)`` (an unbiased estimate of the full one, as
        NumPyro's ``plate(..., subsample_size=...)`` does), so the model can
        be fitted by stochastic VI on batches streamed from the host.
    dim : int, optional
        Dimension of each observation when ``data`` is ``None``; ``None``
        draws scalars, shape ``(num_data,)``.
    mask : Bool[Array, "N"], optional
        Points whose entry is ``False`` do not enter the likelihood (padding
        rows, for example, which let a data set be split evenly across
        devices; see :mod:`dpgmm_ppl.sharding`).

    Examples
    --------
    >>> import jax
    >>> from numpyro.infer import Predictive
    >>> prior = Predictive(dpgmm, num_samples=3)
    >>> draws = prior(jax.random.PRNGKey(0), num_components=5, num_data=10, dim=2)
    >>> draws["obs"].shape, draws["loc"].shape
    ((3, 10, 2), (3, 5, 2))
    >>> full = prior(jax.random.PRNGKey(0), num_components=5, num_data=10, dim=2,
    ...              covariance="full")
    >>> full["scale_tril"].shape
    (3, 5, 2, 2)
    """
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise TypeError(f"priors must be a dpgmm_ppl.Priors, got {type(priors).__name__}")
    structure = covariance_structure(covariance)
    likelihood_scale = None
    if data is not None:
        data = jnp.asarray(data)
        if num_data is not None:
            if isinstance(num_data, int) and num_data < 1:
                raise ValueError(f"num_data must be a positive int, got {num_data}")
            likelihood_scale = num_data / data.shape[0]
        num_data = data.shape[0]
        event_shape = data.shape[1:]
    else:
        if num_data is None:
            raise ValueError("num_data is required when data is None")
        event_shape = () if dim is None else (dim,)
    if not priors.is_resolved:
        # With no data, a standardised scale: mean 0 and standard deviation 1.
        unit = jnp.ones(event_shape)
        reference = data if data is not None else jnp.stack([-unit, unit])
        priors = priors.resolve(reference)
    num_dims = len(event_shape)
    structure = structure_for(structure, num_dims)
    check_fixed_scale(structure, priors)

    alpha = numpyro.sample("alpha", dist.Gamma(priors.alpha_shape, priors.alpha_rate))
    weights = numpyro.sample("weights", StickBreakingWeights(alpha, num_components))
    components = numpyro.plate("component", num_components)
    with components:
        loc_prior = dist.Normal(priors.loc_mean, priors.loc_scale)
        loc = numpyro.sample("loc", loc_prior.expand(event_shape).to_event(num_dims))
    spread = structure.sample(priors, event_shape, components)
    # The likelihood's quadratic forms are evaluated on data centred and scaled
    # by the location prior, so float32 keeps its digits whatever the data's
    # offset and units; the density itself is in data units.
    frame = {"center": priors.loc_mean, "unit": priors.loc_scale}
    likelihood = GaussianMixture(weights, loc, **spread, **frame)
    observe = functools.partial(numpyro.sample, "obs", likelihood, obs=data)
    if mask is not None:
        observe = handlers.mask(observe, mask=mask)
    if likelihood_scale is not None:
        observe = handlers.scale(observe, scale=likelihood_scale)
    with numpyro.plate("data", num_data):
        observe()
