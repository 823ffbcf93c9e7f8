"""The standardised frame in which the shared log-density computes.

Every backend moves in coordinates where the data have mean 0 and a fixed
standard deviation (:data:`UNITS_PER_SPREAD`): the data are centred and
scaled on the host, in float64, before they become float32, and the priors are mapped into the same frame. Because
the default priors are set from the data's own mean and spread, the
standardised problem is the same whatever the data's offset and units, so a
fit of ``1e6 * x`` or ``x + 1e6`` makes the same moves as a fit of ``x``
(Adam's steps, SVI's initial spread and NUTS's first step size all have a
fixed size in these coordinates), and float32 keeps its digits. Results go
back to data units through :meth:`Frame.to_data_units`.

The map is affine in the location-like sites and linear in the scale-like
ones, which the covariance structure names
(:attr:`~dpgmm_ppl.covariance.CovarianceStructure.map_scales`); ``alpha``,
``weights`` and ``corr_cholesky`` do not change.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from dpgmm_ppl.covariance import covariance_structure
from dpgmm_ppl.priors import Priors, _spread_or_fallback, data_center_and_spread

#: Rows per block when the data are standardised (never a float64 copy of all of them).
_BLOCK_ROWS = 1 << 20

#: The frame's unit is the data's standard deviation divided by this. Adam's
#: steps of 0.05 then move a location by 1% of the spread, the ratio of the
#: notebook's own steps to its data (0.05 / 4.6), whatever the data's units.
UNITS_PER_SPREAD = 5.0


class Frame(NamedTuple):
    """Centre and unit of the standardised frame, float64 arrays of the event shape.

    ``x_standard = (x - center) / unit``, where ``unit`` is a fifth of the
    data's standard deviation (:data:`UNITS_PER_SPREAD`), as the covariance
    structure sets it (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.frame_spread`):
    for ``covariance="spherical"`` one number (the geometric mean of the
    columns' spreads), so that a spherical covariance stays spherical.
    """

    center: np.ndarray
    unit: np.ndarray

    @classmethod
    def from_data(cls, data, covariance):
        """The frame of ``data``: its mean, and its standard deviation over
        :data:`UNITS_PER_SPREAD`, both rounded to float32; ``covariance`` (a
        name or :class:`~dpgmm_ppl.covariance.CovarianceStructure`) may
        replace the spread by one it keeps its shape under.

        The rounding keeps the frame's map exact where float32 results go
        back to data units. It also means that the standardised data of
        ``x + 1e6`` and of ``x`` differ by a shift of up to 0.03 (half a
        float32 step at 1e6), which is below what float32 resolves there.
        """
        if hasattr(data, "mean_and_std"):
            # Rows spread over processes: the mean and spread of all of them.
            center, std = data.mean_and_std()
            spread = _spread_or_fallback(center, std)
        else:
            center, spread = data_center_and_spread(data)
        spread = covariance_structure(covariance).frame_spread(spread)
        spread = spread / UNITS_PER_SPREAD
        as_float32 = lambda a: np.asarray(a, np.float32).astype(np.float64)
        return cls(as_float32(center), as_float32(spread))

    @classmethod
    def identity(cls, event_shape=()):
        """The frame that leaves data and parameters as they are."""
        return cls(np.zeros(event_shape), np.ones(event_shape))

    @property
    def log_unit(self) -> float:
        """``sum(log(unit))``: the log-Jacobian of one point's map to data units."""
        return float(np.sum(np.log(self.unit)))

    def standardize_data(self, data, dtype):
        """``(data - center) / unit`` in float64, one block of rows at a time, cast to ``dtype``."""
        data = np.asarray(data)
        out = np.empty(data.shape, dtype)
        for start in range(0, data.shape[0], _BLOCK_ROWS):
            block = data[start : start + _BLOCK_ROWS].astype(np.float64)
            out[start : start + _BLOCK_ROWS] = (block - self.center) / self.unit
        return out

    def standardize_priors(self, priors: Priors) -> Priors:
        """Resolved ``priors`` (data units) mapped into the frame."""
        replaced = {
            "loc_mean": (np.asarray(priors.loc_mean, np.float64) - self.center) / self.unit,
            "loc_scale": np.asarray(priors.loc_scale, np.float64) / self.unit,
            "scale_rate": np.asarray(priors.scale_rate, np.float64) / self.unit,
        }
        if priors.fixed_scale is not None:
            fixed = np.asarray(priors.fixed_scale, np.float64)
            replaced["fixed_scale"] = fixed / self.unit
        replaced = {name: np.asarray(value, np.float32) for name, value in replaced.items()}
        return dataclasses.replace(priors, **replaced)

    def to_data_units(self, values, covariance, xp=np):
        """Latent-site values (any leading axes) of the structure ``covariance``
        from the frame to data units."""
        center = xp.asarray(self.center, dtype=_dtype_of(values))
        unit = xp.asarray(self.unit, dtype=_dtype_of(values))
        return _map_sites(values, covariance, lambda loc: center + unit * loc, unit)

    def from_data_units(self, values, covariance, xp=np):
        """The inverse of :meth:`to_data_units`."""
        center = xp.asarray(self.center, dtype=_dtype_of(values))
        unit = xp.asarray(self.unit, dtype=_dtype_of(values))
        return _map_sites(values, covariance, lambda loc: (loc - center) / unit, 1.0 / unit)

    def log_joint_offset(self, num_data, num_components, covariance, fixed_scale):
        """Log joint in data units minus log joint in the frame (for the same values).

        Each observation and each location contributes ``-sum(log(unit))``,
        and each sampled scale ``-log(unit_d)`` of its dimension
        (:attr:`~dpgmm_ppl.covariance.CovarianceStructure.scales_log_unit`).
        """
        offset = (num_data + num_components) * self.log_unit
        if not fixed_scale:
            offset += covariance_structure(covariance).scales_log_unit(self.unit, num_components)
        return -offset


def _dtype_of(values):
    return getattr(values["loc"], "dtype", np.float32)


def _map_sites(values, covariance, map_loc, unit):
    """Apply the frame map to the sites that carry units; the others are copied."""
    out = dict(values)
    out["loc"] = map_loc(values["loc"])
    out.update(covariance_structure(covariance).map_scales(values, unit))
    return out
