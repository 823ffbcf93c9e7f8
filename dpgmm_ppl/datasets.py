"""Small data sets for Dirichlet-process mixtures, as NumPy ``float32`` arrays.

:func:`seed_mixture` rebuilds, bit for bit, the synthetic four-component
mixture of the notebook this package grew from (with true labels and
parameters); :func:`old_faithful` and :func:`galaxies` load two classic real
data sets shipped as CSV files in ``dpgmm_ppl/data``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

__all__ = ["Dataset", "SeedMixture", "seed_mixture", "old_faithful", "galaxies"]

# True parameters of the seed mixture, as written in the notebook.
_RAW_WEIGHTS = (2, 10, 1, 6)
_LOCS = (-2.0, -5.0, 3.0, 8.0)
_SCALES = (1.1, 2.0, 1.0, 1.5)
_BASE_N_DRAWS = 1000
_SEED = 42
_DEFAULT_NUM_DATA = _BASE_N_DRAWS * sum(_RAW_WEIGHTS)  # 19,000


def _component_counts(num_data: int, weights: np.ndarray) -> np.ndarray:
    """Round ``num_data * weights`` to integers that sum to ``num_data``."""
    target = num_data * weights
    counts = np.round(target).astype(np.int64)
    gap = num_data - int(counts.sum())
    residual = target - counts
    if gap > 0:  # hand the missing points to the most under-rounded components
        counts[np.argsort(-residual, kind="stable")[:gap]] += 1
    elif gap < 0:  # take the surplus from the most over-rounded components
        counts[np.argsort(residual, kind="stable")[:-gap]] -= 1
    return counts


@dataclass(frozen=True, eq=False)
class SeedMixture:
    """A draw from the notebook's four-component 1-D Gaussian mixture.

    Attributes
    ----------
    data : numpy.ndarray
        ``float32`` observations, shape ``(num_data,)``, grouped by
        component in the order 0, 1, 2, 3 (not shuffled).
    labels : numpy.ndarray
        ``int32`` component index of each observation.
    weights, loc, scale : numpy.ndarray
        True mixture weights (normalised, sum to one), means and standard
        deviations, ``float64``, shape ``(4,)``.
    """

    data: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    loc: np.ndarray
    scale: np.ndarray

    @classmethod
    def sample(cls, rng_key: jax.Array | int, num_data: int | None = None) -> SeedMixture:
        """Draw a fresh data set from the true mixture with the notebook's recipe.

        Component ``k`` gets its own key from ``jax.random.split(rng_key, 4)``
        and a block of ``count_k`` draws ``scale_k * normal + loc_k``, all in
        ``float32``; the blocks are concatenated in component order.

        Parameters
        ----------
        rng_key : int or jax.Array
            Seed or JAX PRNG key.
        num_data : int, optional
            Total size. ``None`` means 19,000 (counts 2000, 10000, 1000,
            6000, as in the notebook); otherwise the counts are
            ``round(num_data * weights)`` adjusted to sum to ``num_data``.

        Returns
        -------
        SeedMixture
            A new instance with the same true parameters.

        Examples
        --------
        >>> small = SeedMixture.sample(0, num_data=100)
        >>> np.bincount(small.labels).tolist()
        [10, 53, 5, 32]
        """
        raw = np.asarray(_RAW_WEIGHTS, dtype=np.float64)
        weights = raw / raw.sum()
        if num_data is None:
            num_data = _DEFAULT_NUM_DATA
        if int(num_data) != num_data or num_data < 0:
            raise ValueError(f"num_data must be a non-negative integer, got {num_data!r}")
        counts = _component_counts(int(num_data), weights)
        if isinstance(rng_key, (int, np.integer)):
            rng_key = jax.random.PRNGKey(int(rng_key))
        keys = jax.random.split(rng_key, len(counts))
        locs = np.asarray(_LOCS, dtype=np.float32)
        scales = np.asarray(_SCALES, dtype=np.float32)
        # The notebook's float32 ops in the same order: one IEEE multiply,
        # then one add, each rounded to float32, so the bits are identical.
        # NumPy does the arithmetic to avoid compiling XLA ops per shape.
        draws = [
            scales[k] * np.asarray(jax.random.normal(keys[k], (int(n),), jnp.float32)) + locs[k]
            for k, n in enumerate(counts)
        ]
        data = np.concatenate(draws).astype(np.float32, copy=False)
        labels = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        loc, scale = np.asarray(_LOCS), np.asarray(_SCALES)
        return cls(data=data, labels=labels, weights=weights, loc=loc, scale=scale)

    def log_density(self, x: npt.ArrayLike) -> np.ndarray:
        """Log density of the true mixture, evaluated in ``float64``.

        Parameters
        ----------
        x : array_like
            Points at which to evaluate, any shape.

        Returns
        -------
        numpy.ndarray
            ``log p(x)``, ``float64``, same shape as ``x``.

        Examples
        --------
        >>> mix = seed_mixture()
        >>> grid = np.linspace(-20.0, 20.0, 4001)
        >>> round(float(np.exp(mix.log_density(grid)).sum() * 0.01), 6)
        1.0
        """
        x = np.asarray(x, dtype=np.float64)
        z = (x[..., None] - self.loc) / self.scale
        terms = np.log(self.weights) - np.log(self.scale) - 0.5 * np.log(2 * np.pi) - 0.5 * z**2
        peak = terms.max(axis=-1)
        return peak + np.log(np.exp(terms - peak[..., None]).sum(axis=-1))


def seed_mixture() -> SeedMixture:
    """The notebook's synthetic data set, exactly as the notebook makes it.

    Four Gaussian components with weights proportional to (2, 10, 1, 6),
    means (-2, -5, 3, 8) and standard deviations (1.1, 2, 1, 1.5); 1000 draws
    per unit of weight (19,000 in all) from ``jax.random.PRNGKey(42)``.
    Equivalent to ``SeedMixture.sample(jax.random.PRNGKey(42))``.

    Returns
    -------
    SeedMixture

    Examples
    --------
    >>> mix = seed_mixture()
    >>> mix.data.shape, mix.data.dtype
    ((19000,), dtype('float32'))
    >>> np.bincount(mix.labels).tolist()
    [2000, 10000, 1000, 6000]
    >>> mix.weights.round(4).tolist()
    [0.1053, 0.5263, 0.0526, 0.3158]
    """
    return SeedMixture.sample(jax.random.PRNGKey(_SEED))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A small real data set: ``float32`` ``data`` of shape ``(n,)`` or
    ``(n, d)``, a name and a unit per column, and a ``description`` saying
    what the data are and where this copy comes from."""

    data: np.ndarray
    feature_names: tuple[str, ...]
    units: tuple[str, ...]
    description: str


def _read_csv(name: str) -> tuple[tuple[str, ...], np.ndarray]:
    text = (resources.files("dpgmm_ppl") / "data" / name).read_text(encoding="utf-8")
    header, _, body = text.partition("\n")
    values = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    return tuple(header.strip().split(",")), values


_FAITHFUL_NOTE = """Old Faithful geyser, Yellowstone National Park: 272 eruptions.
Columns: eruption duration (min) and waiting time to the next eruption (min).
Source: R's datasets::faithful, from W. Haerdle (1991), Smoothing Techniques
with Implementation in S, Springer; see also A. Azzalini and A. W. Bowman
(1990), A look at some data on the Old Faithful geyser, Applied Statistics
39, 357-365, which analyses a longer series. Reference copy: Rdatasets
csv/datasets/faithful.csv, checked value by value against seaborn-data's
geyser.csv. Column means 3.487783 and 70.89706."""

_GALAXIES_NOTE = """Velocities (km/s) of 82 galaxies in six conic sections of a survey of
the Corona Borealis region: M. Postman, J. P. Huchra and M. J. Geller (1986),
Astronomical Journal 92, 1238-1247; as analysed by K. Roeder (1990), Journal
of the American Statistical Association 85, 617-624. Version: R's
MASS::galaxies (Venables and Ripley 2002), reference copy Rdatasets
csv/MASS/galaxies.csv, sorted ascending. Its 78th value is 26690; the MASS
help page calls this a typo for 26960, the value in the listing of
Roeder's data in SAS/STAT's PROC (HP)FMM galaxies example. Here it is
{which}. Postman et al.'s 83rd velocity, 5607, is omitted (as in Roeder)."""


def old_faithful() -> Dataset:
    """The Old Faithful geyser data, 272 eruptions by 2 features.

    Eruption duration and waiting time to the next eruption, both in
    minutes, as in R's ``datasets::faithful`` (Haerdle 1991; Azzalini and
    Bowman 1990); see ``description`` for the provenance.

    Returns
    -------
    Dataset
        ``data`` is ``float32`` with shape ``(272, 2)``.

    Examples
    --------
    >>> ds = old_faithful()
    >>> ds.data.shape, ds.feature_names
    ((272, 2), ('eruptions', 'waiting'))
    >>> [round(float(m), 3) for m in ds.data.mean(axis=0, dtype=np.float64)]
    [3.488, 70.897]
    """
    names, values = _read_csv("old_faithful.csv")
    return Dataset(values.astype(np.float32), names, ("min", "min"), _FAITHFUL_NOTE)


def galaxies(corrected: bool = False) -> Dataset:
    """Velocities of 82 galaxies from the Corona Borealis survey (Roeder 1990).

    Ships R's ``MASS::galaxies`` (Rdatasets copy), sorted, in km/s: min
    9172, max 34279, mean 20828.17. Published copies differ at one value:
    the 78th velocity is **26690** in MASS, whose help page calls it a typo
    for **26960** (the value in SAS/STAT's PROC FMM copy of Roeder's data).
    See ``description`` for the full provenance.

    Parameters
    ----------
    corrected : bool, default False
        If True, replace 26690 by 26960 (mean 20831.46).

    Returns
    -------
    Dataset
        ``data`` is ``float32`` with shape ``(82,)``.

    Examples
    --------
    >>> ds = galaxies()
    >>> ds.data.shape, float(ds.data.min()), float(ds.data.max())
    ((82,), 9172.0, 34279.0)
    >>> round(float(ds.data.astype(np.float64).mean()), 2)
    20828.17
    >>> float(galaxies(corrected=True).data[77])
    26960.0
    """
    names, values = _read_csv("galaxies.csv")
    velocity = values[:, 0].copy()
    if corrected:
        (index,) = np.flatnonzero(velocity == 26690.0)
        velocity[index] = 26960.0
    which = "corrected to 26960 (mean 20831.46)" if corrected else "kept (mean 20828.17)"
    note = _GALAXIES_NOTE.format(which=which)
    return Dataset(velocity.astype(np.float32), names, ("km/s",), note)
