"""The example notebooks run from top to bottom (at their reduced size).

The seed, galaxies and Old Faithful notebooks end with assertions on their
own numbers, so one that runs but tells a wrong story fails here too. Marked
``examples`` (up to a minute each): ``make test`` leaves them out, ``make
examples`` (``pytest --examples``) runs them, and CI runs that on the
default Python beside the second leg.
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


@pytest.mark.examples
@pytest.mark.parametrize(
    "name",
    [
        # Four NUTS chains: 43 s optimised, 119 s without XLA's passes (measured).
        pytest.param("posterior_diagnostics.ipynb", marks=pytest.mark.xla_optimized),
        "seed_notebook.ipynb",
        "galaxies.ipynb",
        "old_faithful_2d.ipynb",
    ],
)
def test_notebook_executes(name, tmp_path, monkeypatch, xla_optimized):
    monkeypatch.setenv("DPGMM_NOTEBOOK_QUICK", "1")
    if xla_optimized:  # the kernel inherits the suite's setting otherwise (tests/conftest.py)
        monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "0")
    # The kernel shares the suite's persistent compilation cache (tests/conftest.py).
    cache = os.environ.get("DPGMM_TEST_JAX_CACHE")
    if cache:
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", cache)
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(EXAMPLES / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit notebooks without outputs"
    )
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        output for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.outputs if output.output_type == "error"
    ]
    assert not errors
