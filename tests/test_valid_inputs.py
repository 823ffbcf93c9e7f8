"""Valid edge cases fit, print and draw without a raw NumPy or JAX warning (issue 22).

A constant column, two identical points, integer data, one component and
more components than points are all valid data. What the package has to say
about them it says in its own words (a ``UserWarning`` at the caller's line:
more components than points); what must not reach the user is a warning
raised inside the package's code or its dependencies, such as NumPy's
``RuntimeWarning: divide by zero encountered in divide`` (which MAP's
collapse check once let through on a constant column) or a deprecation.

The data of a pandas DataFrame or Series come with names: the fit keeps
them (``Fit.names``) and the figures put them on their axes.
"""

from __future__ import annotations

import contextlib
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest

import dpgmm_ppl
from dpgmm_ppl import labels, plots
from dpgmm_ppl.cli import _figures

pd = pytest.importorskip("pandas")

#: Modules in which a warning is raw, not the package's own: the package warns at
#: its caller's line (``stacklevel``), so a warning placed inside it, or inside
#: NumPy, JAX or SciPy, leaked from a computation.
INSIDE = r"(dpgmm_ppl|numpy|jax|jaxlib|scipy|matplotlib)(\.|$)"
#: Short MAP runs; data of up to 64 rows share one compiled program per shape and K.
FIT_OPTIONS = {"num_components": 3, "num_steps": 100, "history_every": 50}


@contextlib.contextmanager
def raw_warnings_are_errors():
    """RuntimeWarning, DeprecationWarning and FutureWarning placed inside the package or
    its numeric dependencies raise; the package's own warnings (placed at the caller) pass."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        for category in (RuntimeWarning, DeprecationWarning, FutureWarning):
            warnings.filterwarnings("error", category=category, module=INSIDE)
        warnings.filterwarnings("error", module=r"dpgmm_ppl(\.|$)")  # e.g. matplotlib's, re-placed
        yield


def test_the_filter_catches_raw_warnings_and_lets_the_package_speak():
    with raw_warnings_are_errors():
        with pytest.raises(RuntimeWarning, match="divide by zero"):
            exec("np.float64(1.0) / np.zeros(1)", {"__name__": "dpgmm_ppl.infer.probe", "np": np})
        with pytest.raises(DeprecationWarning):
            exec("warnings.warn('old', DeprecationWarning)",
                 {"__name__": "jax._src.probe", "warnings": warnings})
        with pytest.warns(UserWarning, match="num_components=3 exceeds the number of points"):
            dpgmm_ppl.fit(np.array([[0.0, 1.0], [2.0, 3.0]]), **FIT_OPTIONS)


def _column_frame():
    rng = np.random.default_rng(3)
    return pd.DataFrame({"height": rng.normal(170.0, 10.0, 30), "constant": np.full(30, 3.0)})


#: name -> (data, options of dpgmm_ppl.fit, whether the package warns of K > N)
EDGE_CASES = {
    "constant column (DataFrame)": (_column_frame, {}, False),
    "constant column of zeros": (lambda: np.c_[np.linspace(-1, 1, 30), np.zeros(30)], {}, False),
    "two identical points, K > N": (lambda: np.array([[1.0, 2.0], [1.0, 2.0]]), {}, True),
    "K > N": (lambda: np.array([[0.0, 1.0], [5.0, -1.0]]), {}, True),
    "integer data (Series)": (
        lambda: pd.Series(np.r_[np.arange(10), np.arange(40, 50)], name="count"), {}, False),
    "K = 1": (lambda: np.random.default_rng(4).normal(size=(30, 2)), {"num_components": 1}, False),
    "constant column, SVI": (_column_frame, {"backend": "svi", "num_samples": 10}, False),
}


@pytest.mark.parametrize("case", EDGE_CASES)
def test_valid_edge_cases_fit_print_and_draw_without_raw_warnings(case):
    make, options, warns = EDGE_CASES[case]
    data = make()
    options = {**FIT_OPTIONS, **options}
    with raw_warnings_are_errors():
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", category=UserWarning, module=__name__)
            fit = dpgmm_ppl.fit(data, **options)
        messages = [str(w.message) for w in caught]
        # The package's own word on more components than points, and only then.
        assert any("exceeds the number of points" in m for m in messages) == (
            bool(warns)), messages
        assert np.all(np.isfinite(fit.log_predictive_density(fit.data)))
        fit.predict(fit.data)
        repr(fit)
        repr(labels.point_partition(fit))
        repr(labels.num_clusters_posterior(fit))
        repr(labels.label_switching_report(fit))
        shape = np.shape(fit.data)
        figures = set(_figures.plan_figures(fit.backend, shape)[0]) - {"training.gif"}
        for name in sorted(figures | {"trace.png"}):
            plt.close(_figures.draw_figure(name, fit))
    expected = tuple(data.columns) if isinstance(data, pd.DataFrame) else (
        (data.name,) if isinstance(data, pd.Series) else None)
    assert fit.names == expected


def test_a_dataframe_names_the_axes_of_its_figures():
    frame = _column_frame()
    fit = dpgmm_ppl.fit(frame, **FIT_OPTIONS)
    assert fit.names == ("height", "constant")
    ax = plots.plot_components(fit)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("height", "constant")
    assert "height, constant" in repr(fit)
    # A frame made from an array has pandas' default names 0, 1: no names.
    assert dpgmm_ppl.fit(pd.DataFrame(frame.to_numpy()), **FIT_OPTIONS).names is None
    plt.close("all")
