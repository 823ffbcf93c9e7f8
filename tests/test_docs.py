"""The documentation site's sources are complete and their links resolve.

Static checks of ``docs/`` and ``mkdocs.yml``, without MkDocs (``make docs``
builds the site, with every warning fatal): the public API has a reference
entry, the navigation names existing pages, relative links, images and
snippets point to files, and cross-references name real objects.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import dpgmm_ppl

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"

#: ``::: identifier`` lines of mkdocstrings, and the ``heading:`` option under one.
DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$", re.M)
#: Markdown links and images ``[text](target)`` / ``![alt](target)``.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
#: Reference-style cross-references to API objects: ``[text][dpgmm_ppl.x]``.
CROSS_REFERENCE = re.compile(r"\]\[(dpgmm_ppl(?:\.\w+)*)\]")
#: pymdownx.snippets includes: ``--8<-- "path"``.
SNIPPET = re.compile(r'^--8<--\s+"([^"]+)"\s*$', re.M)
#: Modules that have a reference page of their own.
MODULES = ("labels", "plots", "datasets", "reparam", "sharding")


def _pages():
    return sorted(p for p in DOCS.rglob("*.md") if "figures" not in p.relative_to(DOCS).parts)


def _without_code(text):
    """Markdown text without fenced code blocks, whose brackets are not links."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _resolve(identifier):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = identifier.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(identifier)


def _nav_pages():
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") :]
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", nav, flags=re.M)


def _documented_objects():
    objects = []
    for page in sorted(API.glob("*.md")):
        for identifier in DIRECTIVE.findall(page.read_text()):
            objects.append((identifier, _resolve(identifier)))
    return objects


def test_every_public_name_has_a_reference_entry():
    documented = [obj for _, obj in _documented_objects()]
    public = [name for name in dpgmm_ppl.__all__ if not name.startswith("__")]
    missing = [name for name in public if not any(getattr(dpgmm_ppl, name) is obj for obj in documented)]
    assert not missing, f"public names without a '::: ...' entry in docs/api/: {missing}"


def test_the_modules_and_the_estimator_have_reference_entries():
    identifiers = {identifier for identifier, _ in _documented_objects()}
    for module in MODULES:
        assert f"dpgmm_ppl.{module}" in identifiers, module
    assert "dpgmm_ppl.sklearn.DirichletProcessGMM" in identifiers


def test_the_navigation_names_existing_pages_and_every_page_is_in_it():
    nav = _nav_pages()
    assert "index.md" in nav and "api/dpgmm_ppl.md" in nav
    assert len(nav) == len(set(nav)), "a page is in the navigation twice"
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"pages in mkdocs.yml's nav that do not exist: {missing}"
    orphans = [str(p.relative_to(DOCS)) for p in _pages() if str(p.relative_to(DOCS)) not in nav]
    assert not orphans, f"pages missing from mkdocs.yml's nav: {orphans}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_relative_links_images_and_snippets_resolve(page):
    raw = page.read_text()
    text = _without_code(raw)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # external or same-page
        path = target.split("#", 1)[0]
        if path.startswith("examples/"):
            # docs/hooks.py publishes the repository's examples/ at this path.
            resolved = ROOT / path
        else:
            resolved = (page.parent / path).resolve()
        if not resolved.is_file():
            broken.append(target)
    for snippet in SNIPPET.findall(raw):  # snippets work inside code blocks too
        if not (DOCS / snippet).is_file():
            broken.append(snippet)
    assert not broken, f"{page.relative_to(DOCS)} points to missing files: {broken}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_cross_references_name_real_objects(page):
    unknown = []
    for identifier in CROSS_REFERENCE.findall(page.read_text()):
        try:
            _resolve(identifier)
        except (ImportError, AttributeError):
            unknown.append(identifier)
    assert not unknown, f"{page.relative_to(DOCS)} cross-references unknown objects: {unknown}"


def test_every_example_notebook_is_linked():
    text = (DOCS / "examples.md").read_text()
    unlinked = [p.name for p in sorted((ROOT / "examples").glob("*.ipynb"))
                if f"(examples/{p.name})" not in text]
    assert not unlinked, f"notebooks not linked from docs/examples.md: {unlinked}"


def test_the_committed_figures_are_there_and_small():
    referenced = set()
    for page in _pages():
        raw = page.read_text()
        referenced |= {Path(t).name for t in LINK.findall(_without_code(raw)) if t.startswith("figures/")}
        referenced |= {Path(s).name for s in SNIPPET.findall(raw) if s.startswith("figures/")}
    assert referenced, "no page shows a figure"
    for name in sorted(referenced):
        path = DOCS / "figures" / name
        assert path.is_file(), f"docs/figures/{name} is missing: run docs/make_figures.py"
        if path.suffix == ".png":
            assert path.stat().st_size < 150_000, f"{name}: keep figures small (dpi 80-100)"
