"""Label switching: relabel draws, diagnose switching, summarise without labels.

A mixture's likelihood is unchanged when its components are permuted, so the
component labels of a posterior draw are arbitrary: chains (and MAP or SVI
restarts) settle on different labellings, and a NUTS chain can swap labels
mid-run. Three kinds of tool live here; none of them re-fits.

- :func:`relabel` permutes the components of every draw onto one labelling:
  ``"pivot"`` (Marin, Mengersen & Robert 2005), ``"ecr"`` (Papastamoulis &
  Iliopoulos 2010) and ``"stephens"`` (Stephens 2000); :func:`apply_permutations`
  applies given permutations (module ``relabelling``).
- :func:`label_switching_report` compares R-hat of per-component sites with
  that of label-invariant quantities (module ``report``).
- :func:`coclustering_matrix`, :func:`point_partition` (module ``partition``)
  and :func:`num_clusters_posterior` (module ``clusters``) never look at
  labels at all.

Everything that touches all draws and all points runs in one jitted pass over
blocks of draws and chunks of points (module ``_kernels``), so memory stays
bounded by ``_BLOCK_ELEMENTS`` whatever the number of draws and points; only
the ``K x K`` assignments run in Python
(:func:`scipy.optimize.linear_sum_assignment`). Arguments are checked at the
edge (module ``_checks``).

Examples
--------
>>> from dpgmm_ppl import labels
>>> labels.METHODS, labels.LOSSES
(('pivot', 'ecr', 'stephens'), ('vi', 'binder'))
"""

from dpgmm_ppl.labels.clusters import NumClustersPosterior, num_clusters_posterior
from dpgmm_ppl.labels.partition import (
    LOSSES,
    Coclustering,
    Partition,
    coclustering_matrix,
    point_partition,
)
from dpgmm_ppl.labels.relabelling import METHODS, apply_permutations, relabel
from dpgmm_ppl.labels.report import LabelSwitchingReport, label_switching_report

__all__ = [
    "Coclustering",
    "LabelSwitchingReport",
    "NumClustersPosterior",
    "Partition",
    "apply_permutations",
    "coclustering_matrix",
    "label_switching_report",
    "num_clusters_posterior",
    "point_partition",
    "relabel",
]
