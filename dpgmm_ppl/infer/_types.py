"""Type aliases shared by the backends' signatures.

Aliases only, for annotations: an unconstrained position, the potential of
:class:`~dpgmm_ppl.density.LogDensity`, the ``unravel`` of
``jax.flatten_util.ravel_pytree`` and an optax transformation.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

__all__ = ["Optimizer", "Position", "Potential", "Unravel"]

#: An unconstrained position: one array per latent site, keyed by its name.
Position = dict[str, jax.Array]
#: ``potential_fn(position, data)``: minus the log density of the position.
Potential = Callable[[Position, Any], jax.Array]
#: Maps a flat vector back to a position (from ``ravel_pytree``).
Unravel = Callable[[jax.Array], Position]
#: Any optax transformation.
Optimizer = optax.GradientTransformation
