"""MkDocs hooks: example notebooks in the site, Sphinx roles in the docstrings.

- The notebooks live in ``examples/`` at the repository root, outside the
  docs folder. They are copied into the site as they are (no execution, no
  rendering), so that ``examples/NAME.ipynb`` links from the pages resolve
  and ``mkdocs build --strict`` checks them.
- The docstrings are numpydoc and cross-reference with Sphinx roles
  (``:func:`~dpgmm_ppl.fit```), which Markdown renders as the role's name
  followed by a code span. The roles are turned into optional autorefs
  here: a link where the target is documented on the site, plain code
  otherwise (``optional`` keeps an unknown target from failing the build).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from mkdocs.structure.files import File

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: ``:role:`` directly followed by the code span Markdown made of its target.
ROLE = re.compile(r":(?:py:)?(func|class|meth|attr|mod|data|obj|exc|math):<code>(.*?)</code>", re.S)
#: The pages document ``fit`` and ``compare`` under the modules that define
#: them (``compare`` shares its name with its module).
FUNCTIONS = {"dpgmm_ppl.fit": "dpgmm_ppl.api.fit", "dpgmm_ppl.compare": "dpgmm_ppl.compare.compare"}
#: ``title <target>`` inside a role.
EXPLICIT_TITLE = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)


def on_files(files, config):
    for notebook in sorted(EXAMPLES.glob("*.ipynb")):
        files.append(
            File.generated(config, f"examples/{notebook.name}", abs_src_path=str(notebook))
        )
    return files


def _role_to_reference(match):
    role, text = match.group(1), html.unescape(match.group(2))
    if role == "math":
        return f"<code>{html.escape(text)}</code>"
    explicit = EXPLICIT_TITLE.match(text)
    if explicit:
        title, target = explicit.group(1), explicit.group(2)
    else:
        target = text.lstrip("~")
        title = target.rsplit(".", 1)[-1] if text.startswith("~") else target
    if role == "func":
        target = FUNCTIONS.get(target, target)
    return (
        f'<autoref identifier="{html.escape(target)}" optional>'
        f"<code>{html.escape(title)}</code></autoref>"
    )


def on_page_content(html_text, page, config, files):
    return ROLE.sub(_role_to_reference, html_text)
