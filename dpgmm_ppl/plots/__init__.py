"""Matplotlib figures of a :class:`~dpgmm_ppl.Fit`.

Post-processing only: nothing here re-fits. Each ``plot_*`` function takes
``ax=None`` (a new pyplot figure when omitted) and returns the Axes; the
figures of several panels take ``axes`` and return an array of them. Only
this package imports matplotlib. Density plots are for scalar data; for
vector data, :func:`plot_components` draws the points with each component
as an ellipse, as a pair plot of every two columns beyond two. Every axis
that shows a column of the data is named after it: ``names=`` where given,
else ``fit.names`` (a DataFrame's columns, a CSV header), else ``x[0]``, ....
"""

from dpgmm_ppl.plots._common import GRID_PAD, GRID_SIZE
from dpgmm_ppl.plots.components import component_ellipses, plot_components
from dpgmm_ppl.plots.density import plot_density, plot_predictive_comparison, plot_weights
from dpgmm_ppl.plots.labels import (
    plot_coclustering,
    plot_label_switching,
    plot_num_clusters,
    plot_weights_against_posterior,
)
from dpgmm_ppl.plots.training import animate_training, plot_loss, save_figures

__all__ = [
    "GRID_PAD",
    "GRID_SIZE",
    "animate_training",
    "component_ellipses",
    "plot_coclustering",
    "plot_components",
    "plot_label_switching",
    "plot_num_clusters",
    "plot_weights_against_posterior",
    "plot_density",
    "plot_loss",
    "plot_predictive_comparison",
    "plot_weights",
    "save_figures",
]
