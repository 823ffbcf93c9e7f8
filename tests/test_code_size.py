"""Modules and functions stay short enough to read.

The limits of the style guide: no module of the package over 450 lines, no
function over 60 lines of code. A line of code is one that is not blank, not
a comment and not part of a docstring, so that a function is not pushed to
split by its documentation. Nothing is imported: the sources are parsed.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).parents[1] / "dpgmm_ppl"
MAX_MODULE_LINES = 450
MAX_FUNCTION_CODE_LINES = 60


def _docstring_lines(tree):
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_line_count(source, node, docstrings):
    """Lines of ``node`` that are neither blank, comments nor docstrings."""
    lines = source.splitlines()
    return sum(
        1 for number in range(node.lineno, node.end_lineno + 1)
        if number not in docstrings
        and lines[number - 1].strip()
        and not lines[number - 1].strip().startswith("#")
    )


def _long_functions(path):
    source = path.read_text()
    tree = ast.parse(source)
    docstrings = _docstring_lines(tree)
    return [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({count} lines of code)"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for count in [code_line_count(source, node, docstrings)]
        if count > MAX_FUNCTION_CODE_LINES
    ]


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_counter_counts_code_only():
    source = '''def f(x):
    """Doc.

    More doc.
    """
    # a comment

    y = x + 1
    return (y,
            x)
'''
    tree = ast.parse(source)
    assert code_line_count(source, tree.body[0], _docstring_lines(tree)) == 4


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_functions_are_short(path):
    lines = path.read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines (limit {MAX_MODULE_LINES})"
    assert not _long_functions(path), _long_functions(path)
