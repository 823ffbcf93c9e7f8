"""The truncated stick-breaking DP-GMM as a NumPyro model."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro import handlers

from dpgmm_ppl.distributions import GaussianMixture, StickBreakingWeights
from dpgmm_ppl.priors import Priors

__all__ = ["dpgmm"]


def dpgmm(data=None, *, num_components=25, priors=None, num_data=None, dim=None, mask=None):
    r"""Dirichlet-process Gaussian mixture, truncated at ``num_components``.

    .. math::

        \alpha &\sim \mathrm{Gamma}(a_\alpha, b_\alpha), \qquad
        w \mid \alpha \sim \mathrm{StickBreaking}(\alpha, K) \\
        \mu_k &\sim \mathcal{N}(m, s), \qquad
        \sigma_k \sim \mathrm{InverseGamma}(a_\sigma, b_\sigma) \\
        x_n \mid w, \mu, \sigma &\sim \textstyle\sum_k w_k\,
            \mathcal{N}(\mu_k, \operatorname{diag}\sigma_k^2)

    Sample sites: ``alpha`` (scalar), ``weights`` (K,), ``loc`` and ``scale``
    ((K,) for 1-d data, (K, D) otherwise), and ``obs`` under the plate
    ``data``. The component labels are summed out, so every site is continuous
    and the model runs as it is under ``numpyro.infer.MCMC``, ``SVI`` and
    ``Predictive``.

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
    """
    priors = Priors() if priors is None else priors
    if not isinstance(priors, Priors):
        raise TypeError(f"priors must be a dpgmm_ppl.Priors, got {type(priors).__name__}")
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

    alpha = numpyro.sample("alpha", dist.Gamma(priors.alpha_shape, priors.alpha_rate))
    weights = numpyro.sample("weights", StickBreakingWeights(alpha, num_components))
    with numpyro.plate("component", num_components):
        loc_prior = dist.Normal(priors.loc_mean, priors.loc_scale)
        scale_prior = dist.InverseGamma(priors.scale_shape, priors.scale_rate)
        loc = numpyro.sample("loc", loc_prior.expand(event_shape).to_event(num_dims))
        if priors.fixed_scale is None:
            scale = numpyro.sample(
                "scale", scale_prior.expand(event_shape).to_event(num_dims)
            )
    if priors.fixed_scale is not None:
        fixed = jnp.asarray(priors.fixed_scale, dtype=jnp.result_type(float))
        scale = numpyro.deterministic(
            "scale", jnp.broadcast_to(fixed, (num_components,) + event_shape)
        )
    # The likelihood's quadratic forms are evaluated on data centred and scaled
    # by the location prior, so float32 keeps its digits whatever the data's
    # offset and units; the density itself is in data units.
    likelihood = GaussianMixture(
        weights, loc, scale, center=priors.loc_mean, unit=priors.loc_scale
    )
    observe = functools.partial(numpyro.sample, "obs", likelihood, obs=data)
    if mask is not None:
        observe = handlers.mask(observe, mask=mask)
    if likelihood_scale is not None:
        observe = handlers.scale(observe, scale=likelihood_scale)
    with numpyro.plate("data", num_data):
        observe()
