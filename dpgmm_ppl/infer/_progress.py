"""A tqdm bar over the optimisation steps, advanced from inside compiled code.

The optimisers run every step inside one compiled ``lax.scan``, so the host
learns of their progress only through a callback. :class:`StepBar` hands the
compiled loop a function to call once per block of steps (MAP and SVI call it
once per ``history_every`` steps, never once per step: every call is a trip
to the host). Switched off, it adds nothing to the traced program, so the
compiled loop, and its result, are the same with and without a bar.

A compiled program outlives the fit that traced it (later fits of the same
shape run it again), so the callback it holds advances whichever bar is
open when it runs, not the bar that was open when it was traced.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

__all__ = ["StepBar", "check_progress_bar"]


def check_progress_bar(value):
    """Refuse a ``progress_bar`` option that is not ``True`` or ``False``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"progress_bar must be True or False, got {value!r}")


class StepBar:
    """A bar of ``total`` steps on stderr, or nothing when ``enabled`` is false.

    Parameters
    ----------
    desc : str
        Label of the bar (``"MAP"``, ``"SVI"``).
    total : int
        Steps of every chain together.
    enabled : bool
        ``False``: every method does nothing and nothing is traced.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> bar = StepBar("demo", 4, enabled=True)
    >>> def block(carry, _):
    ...     carry = carry + 1.0  # two steps' work
    ...     bar.report(2, carry)
    ...     return carry, None
    >>> with bar:  # the bar is drawn on stderr
    ...     total = jax.jit(lambda x: jax.lax.scan(block, x, None, length=2)[0])(0.0)
    >>> float(total), bar.count
    (2.0, 4)
    """

    #: The bar that the compiled callbacks advance: the one open now.
    _open = None

    def __init__(self, desc, total, *, enabled):
        self.desc = desc
        self.total = int(total)
        self.enabled = bool(enabled)
        self.count = 0
        self._bar = None
        self._started = False

    def report(self, num_steps, dependency):
        """Traced: advance the bar by ``num_steps`` when the program gets here.

        ``dependency`` is a value the block of steps computed (its last
        loss): it orders the report after the block, and under ``vmap`` makes
        one report per chain.
        """
        if self.enabled:
            jax.debug.callback(_advance_open_bar, num_steps, dependency)

    def report_if(self, predicate, num_steps, dependency):
        """Traced: :meth:`report` where ``predicate`` holds (a ``lax.cond``)."""
        if self.enabled:
            jax.lax.cond(
                predicate, lambda: self.report(num_steps, dependency), lambda: None
            )

    def advance(self, num_steps):
        """From the host: advance the bar by ``num_steps`` (starting it if need be)."""
        if self.enabled:
            self.start()
            self._advance(num_steps, None)

    def start(self):
        """Compilation is over: the bar now counts steps, its clock from zero."""
        if self._bar is not None and not self._started:
            self._started = True
            self._bar.set_description(self.desc, refresh=False)
            self._bar.reset(total=self.total)

    def _advance(self, num_steps, _):
        self.count += int(num_steps)
        if self._bar is not None:
            self._bar.update(int(num_steps))

    def __enter__(self):
        StepBar._open = self
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, desc=f"{self.desc} (compiling)", unit="step",
                file=sys.stderr, dynamic_ncols=True,
            )
        return self

    def __exit__(self, *exc_info):
        StepBar._open = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _advance_open_bar(num_steps, dependency):
    if StepBar._open is not None:
        StepBar._open._advance(num_steps, dependency)
