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

A callback is a Python function of this process, so neither JAX's
persistent cache nor the package's stored programs can keep a program that
holds one: the next process compiles it again. Short fits, where
compilation is most of the time, therefore count their steps from the host
instead (``in_program=False``): the bar shows the compilation, then all the
steps at once when the program is done, and the program is the one a fit
without a bar runs. :func:`optimiser_bar` draws the line for MAP and SVI.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

__all__ = ["IN_PROGRAM_WORK", "StepBar", "check_progress_bar", "optimiser_bar"]

#: Rows x components x steps (of every chain) from which MAP and SVI count
#: their steps from inside the compiled loop: about a second of CPU time.
#: At the defaults (25 components, 10,000 steps) the galaxies' MAP fit is
#: 2.2e7 (88 rows); the demo's, on the seed data at 50 components, 1.0e10.
IN_PROGRAM_WORK = 1e9


def optimiser_bar(desc, density, num_steps, enabled):
    """The bar of ``num_steps`` optimiser steps (every chain's) on ``density``'s data:
    counted inside the program only from :data:`IN_PROGRAM_WORK` on, where
    the fit is long enough to pay for compiling it in every process."""
    work = float(density.data.shape[0]) * density.num_components * num_steps
    return StepBar(desc, num_steps, enabled=enabled, in_program=work >= IN_PROGRAM_WORK)


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
    in_program : bool
        ``True``: the compiled loop advances the bar (:meth:`report`);
        ``False``: nothing is traced, and :meth:`finish` counts every step
        once the program is done.

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

    def __init__(self, desc, total, *, enabled, in_program=True):
        self.desc = desc
        self.total = int(total)
        self.enabled = bool(enabled)
        self.in_program = self.enabled and bool(in_program)
        self.count = 0
        self._bar = None
        self._started = False

    def report(self, num_steps, dependency):
        """Traced: advance the bar by ``num_steps`` when the program gets here.

        ``dependency`` is a value the block of steps computed (its last
        loss): it orders the report after the block, and under ``vmap`` makes
        one report per chain.
        """
        if self.in_program:
            jax.debug.callback(_advance_open_bar, num_steps, dependency)

    def report_if(self, predicate, num_steps, dependency):
        """Traced: :meth:`report` where ``predicate`` holds (a ``lax.cond``)."""
        if self.in_program:
            jax.lax.cond(
                predicate, lambda: self.report(num_steps, dependency), lambda: None
            )

    def advance(self, num_steps):
        """From the host: advance the bar by ``num_steps`` (starting it if need be)."""
        if self.enabled:
            self.start()
            self._advance(num_steps, None)

    def finish(self):
        """From the host, the program done: a bar counted outside it shows every step."""
        if self.enabled and not self.in_program:
            self.advance(self.total - self.count)

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
