"""Short text and HTML summaries of the result types, for ``repr`` and notebooks.

A result prints as a header line and a few indented rows, as pandas and
ArviZ objects do; the arrays stay one attribute away. In a notebook the
same rows are a small HTML table (``_repr_html_``).
"""

from __future__ import annotations

import html

__all__ = ["html_table", "text_table"]

#: Cells longer than this are cut, with an ellipsis.
MAX_CELL = 72


def _cell(value) -> str:
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def text_table(rows, *, header=None, indent="  "):
    """Lines of left-aligned columns: ``rows`` (and an optional ``header``) of cells."""
    table = ([list(header)] if header else []) + [[_cell(c) for c in row] for row in rows]
    if not table:
        return []
    widths = [max(len(row[j]) for row in table if j < len(row)) for j in range(len(table[0]))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table
    ]


def html_table(rows, *, header=None, caption=None):
    """A small HTML table of ``rows`` of cells, escaped, with an optional header and caption."""
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>")
    if header:
        parts.append("<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in header) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)

