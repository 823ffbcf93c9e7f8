"""Every public function and method of the package carries type annotations.

The public surface is what the package exports: the ``__all__`` of
:mod:`dpgmm_ppl` and of its public subpackages and modules. For each exported
function, and each public method (or property) that a class exported there
defines in the package's own source, every parameter other than ``self`` /
``cls`` and ``*args`` / ``**kwargs`` must be annotated, and so must the return.
Methods written by ``NamedTuple`` or ``dataclass`` (compiled from strings, not
from the package's files) and anything inherited from outside the package
are left out.
"""

import importlib
import inspect
from pathlib import Path

import pytest

import dpgmm_ppl

MODULES = [
    "dpgmm_ppl",
    "dpgmm_ppl.labels",
    "dpgmm_ppl.plots",
    "dpgmm_ppl.datasets",
    "dpgmm_ppl.reparam",
    "dpgmm_ppl.sharding",
    "dpgmm_ppl.infer",
    "dpgmm_ppl.sklearn",  # the estimator (scikit-learn is in the dev extra)
]

#: Public names left out of the check (none today; a name added here needs a reason).
NOT_YET_ANNOTATED: set[str] = set()

PACKAGE_DIR = Path(dpgmm_ppl.__file__).resolve().parent
_SKIPPED_KINDS = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _in_package(function):
    """Whether ``function`` is written in the package's own source files."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None:
        return False
    return PACKAGE_DIR in Path(code.co_filename).resolve().parents


def _methods(cls):
    """The public methods and properties ``cls`` and its package bases define."""
    seen = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("dpgmm_ppl"):
            continue
        for name, member in vars(klass).items():
            if name in seen or (name.startswith("_") and name not in ("__init__", "__call__")):
                continue
            seen.add(name)
            if isinstance(member, property):
                function, bound = member.fget, True
            elif isinstance(member, staticmethod):
                function, bound = member.__func__, False
            elif isinstance(member, classmethod):
                function, bound = member.__func__, True
            elif inspect.isfunction(member):
                function, bound = member, True
            else:
                continue
            if function is not None and _in_package(function):
                yield f"{cls.__name__}.{name}", function, bound


def _missing(function, *, bound):
    """Names of the parameters of ``function`` (and ``return``) left unannotated."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    if bound:
        parameters = parameters[1:]
    missing = [
        parameter.name
        for parameter in parameters
        if parameter.kind not in _SKIPPED_KINDS and parameter.annotation is inspect.Parameter.empty
    ]
    if signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def _public_callables():
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            qualified = f"{module_name}.{name}"
            if qualified in NOT_YET_ANNOTATED:
                continue
            obj = getattr(module, name)
            if inspect.isclass(obj) and obj.__module__.startswith("dpgmm_ppl"):
                for method_name, function, bound in _methods(obj):
                    yield f"{module_name}.{method_name}", function, bound
            elif inspect.isfunction(obj) and _in_package(obj):
                yield qualified, obj, False


def test_public_api_is_annotated():
    gaps = {}
    for name, function, bound in _public_callables():
        missing = _missing(function, bound=bound)
        if missing:
            gaps[name] = missing
    listing = "\n".join(f"  {name}: {', '.join(missing)}" for name, missing in sorted(gaps.items()))
    assert not gaps, f"public functions without annotations:\n{listing}"


def test_walk_covers_the_public_api():
    names = {name for name, _, _ in _public_callables()}
    assert "dpgmm_ppl.Fit.to_arviz" in names or "dpgmm_ppl.Fit.posterior" in names
    assert "dpgmm_ppl.build_log_density" in names
    assert "dpgmm_ppl.plots.plot_density" in names
    assert "dpgmm_ppl.labels.relabel" in names
    assert len(names) > 60


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(x, *args, y: int = 1, **kwargs) -> int: ...", ["x"]),
        ("def f(x: int, y: float) -> None: ...", []),
        ("def f(x: int): ...", ["return"]),
    ],
)
def test_missing_reports_unannotated_parameters(source, expected):
    namespace = {}
    exec(source, namespace)
    assert _missing(namespace["f"], bound=False) == expected


def test_missing_skips_self_of_methods():
    class Example:
        def method(self, x: int) -> int:
            return x

    assert _missing(Example.method, bound=True) == []
    assert _missing(Example.method, bound=False) == ["self"]
