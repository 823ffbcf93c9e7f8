"""Every example in the package's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import dpgmm_ppl


def _modules():
    names = [dpgmm_ppl.__name__]
    for info in pkgutil.walk_packages(dpgmm_ppl.__path__, prefix="dpgmm_ppl."):
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    if name == "dpgmm_ppl.sklearn":
        pytest.importorskip("sklearn")  # an optional dependency
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
