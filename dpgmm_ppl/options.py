"""The checks every entry point runs before a fit: the shared arguments and a backend's options.

:func:`dpgmm_ppl.fit`, :func:`dpgmm_ppl.compare`, the estimator
:class:`dpgmm_ppl.sklearn.DirichletProcessGMM` and the ``dpgmm-ppl`` command
all check through these functions, so that one bad value gets one error,
whichever way it came in. What is particular to an entry point stays there:
the estimator's ``max_iter`` (the backend's ``num_steps``), the command's
rule that a run-length flag applies to some backends only.

An error names the argument; ``names`` maps an argument to the way the
caller's user writes it (``n_components`` for the estimator, ``--num-steps``
on the command line), and the error then names it that way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Optional, Union

from dpgmm_ppl._validation import (
    check_batch_size,
    check_covariance,
    check_positive_int,
    check_priors,
    check_rng_key,
)
from dpgmm_ppl.infer import get_backend
from dpgmm_ppl.infer.base import Backend
from dpgmm_ppl.priors import Priors

__all__ = ["FitArguments", "check_counts", "check_fit_arguments", "resolve_options"]


class FitArguments(NamedTuple):
    """The arguments of :func:`dpgmm_ppl.fit` that every backend shares, checked.

    Attributes
    ----------
    num_components : int
        Truncation level of the stick-breaking prior.
    num_chains : int
        Restarts or chains.
    rng_key : Array
        The raw ``uint32[2]`` key.
    priors : Priors
        The hyperparameters (``Priors()`` when none were given).
    covariance : str
        The name of the structure fitted (``"diag"`` for scalar data).
    """

    num_components: int
    num_chains: int
    rng_key: Any
    priors: Priors
    covariance: str


@contextlib.contextmanager
def _spelled(names: Optional[Mapping[str, str]]) -> Iterator[None]:
    """Re-raise an error that opens with an argument's name, naming it as ``names`` says."""
    try:
        yield
    except (ValueError, TypeError) as error:
        message = str(error)
        for name, spelling in (names or {}).items():
            if type(error) in (ValueError, TypeError) and message.startswith(name + " "):
                renamed = type(error)(spelling + message[len(name):])
                raise renamed.with_traceback(error.__traceback__) from None
        raise


def check_counts(
    num_components: Any, num_chains: Any, *, names: Optional[Mapping[str, str]] = None
) -> tuple[int, int]:
    """``num_components`` and ``num_chains`` as ints, each at least 1.

    Parameters
    ----------
    num_components, num_chains : int
        The truncation level and the number of restarts or chains.
    names : Mapping of str to str, optional
        How the caller spells ``"num_components"`` and ``"num_chains"``.

    Returns
    -------
    (int, int)

    Examples
    --------
    >>> check_counts(25, 4)
    (25, 4)
    >>> check_counts(0, 4, names={"num_components": "n_components"})
    Traceback (most recent call last):
    ...
    ValueError: n_components must be an integer >= 1, got 0
    """
    with _spelled(names):
        return (check_positive_int("num_components", num_components),
                check_positive_int("num_chains", num_chains))


def check_fit_arguments(
    rows: Any,
    *,
    num_components: Any,
    num_chains: Any,
    rng_key: Any,
    priors: Any,
    covariance: Any,
) -> FitArguments:
    """The arguments every backend shares, checked against the data's ``rows``.

    Parameters
    ----------
    rows : array of shape (N,) or (N, D)
        The checked data (:func:`dpgmm_ppl._validation.check_training_data`),
        or this process's rows of them; their shape is what the priors and
        the covariance are checked against.
    num_components, num_chains, rng_key, priors, covariance
        As :func:`dpgmm_ppl.fit` takes them.

    Returns
    -------
    FitArguments

    Examples
    --------
    >>> import numpy as np
    >>> checked = check_fit_arguments(np.zeros(10), num_components=3, num_chains=2,
    ...                               rng_key=0, priors=None, covariance="full")
    >>> checked.num_components, checked.num_chains, checked.covariance
    (3, 2, 'diag')
    >>> check_fit_arguments(np.zeros((10, 2)), num_components=3, num_chains=2,
    ...                     rng_key=0, priors=None, covariance="tied")
    Traceback (most recent call last):
    ...
    ValueError: covariance must be one of ('diag', 'spherical', 'full'), got 'tied'
    """
    num_components, num_chains = check_counts(num_components, num_chains)
    key = check_rng_key(rng_key)
    priors = check_priors(priors, rows, num_components)
    covariance = check_covariance(covariance, rows, priors)
    return FitArguments(num_components, num_chains, key, priors, covariance)


def resolve_options(
    backend: Union[str, Backend],
    options: Mapping[str, Any],
    *,
    num_points: Optional[int] = None,
    names: Optional[Mapping[str, str]] = None,
) -> dict:
    """Every option of ``backend``: its defaults, overridden by ``options``, checked.

    Parameters
    ----------
    backend : str or Backend
        A registered backend's name (:func:`dpgmm_ppl.infer.get_backend`),
        or the backend itself.
    options : Mapping
        The options given; each must be one the backend takes.
    num_points : int, optional
        The number of points of the data, which bounds ``batch_size``.
    names : Mapping of str to str, optional
        How the caller spells the options (``{"num_steps": "--num-steps"}``).

    Returns
    -------
    dict
        Every option the backend takes, with its value.

    Raises
    ------
    TypeError
        For an option the backend does not take, naming the backend and
        listing the options it takes.
    ValueError or TypeError
        For a bad value: the backend's own ``validate`` decides.

    Examples
    --------
    >>> resolve_options("map", {"num_steps": 200})["num_steps"]
    200
    >>> resolve_options("map", {"num_steps": -5})
    Traceback (most recent call last):
    ...
    ValueError: num_steps must be an integer >= 1, got -5
    >>> resolve_options("nuts", {"num_steps": 200})
    Traceback (most recent call last):
    ...
    TypeError: backend 'nuts' does not take the option(s) ['num_steps']; its options are [...]
    """
    if isinstance(backend, str):
        backend = get_backend(backend)
    unknown = sorted(set(options) - set(backend.defaults))
    if unknown:
        raise TypeError(
            f"backend {backend.name!r} does not take the option(s) {unknown}; "
            f"its options are {sorted(backend.defaults)}"
        )
    resolved = {**backend.defaults, **options}
    with _spelled(names):
        backend.validate(resolved)
        if num_points is not None:
            check_batch_size(resolved.get("batch_size"), num_points)
    return resolved
