"""Self-contained HTML pages (no CDN, inline CSS and JS): the evaluation report and comparisons.

`page` wraps sections into one document; `table` writes a table whose columns sort on a click
on their header (numbers numerically, text alphabetically, empty cells always last; a second
click reverses). Each cell is ``(shown text, sort value)``; a sort value of ``None`` is empty.
Images are referenced by relative path, so the page works from disk (``file://``) next to them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["Cell", "cell", "page", "percent_cell", "table"]

#: ``(text shown, sort value)``; the sort value is a number, a string or None (empty).
Cell = tuple[str, float | str | None]

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td.text, th.text { text-align: left; }
th { background: #f3f3f3; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
.summary { font-size: 1.2em; font-weight: bold; }
.protocol { font-family: monospace; background: #f7f7f7; padding: 4px; }
.gallery figure { margin: 0 0 1.5em 0; }
.gallery img, img.plot { max-width: 100%; border: 1px solid #ddd; }
.pos { color: #1a7f37; } .neg { color: #c62828; }
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute('data-order') !== 'asc';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('data-order'); });
      th.setAttribute('data-order', asc ? 'asc' : 'desc');
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute('data-value');
        var y = b.cells[col].getAttribute('data-value');
        if (x === '' || y === '') { return (x === '') - (y === ''); }
        var nx = Number(x), ny = Number(y);
        var r = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? r : -r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def cell(value: float | int | str | None, digits: int = 2) -> Cell:
    """A cell for a number (shown with ``digits`` decimals; NaN/None shown as "nan") or text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ("nan", None)
    if isinstance(value, str):
        return (value, value)
    if isinstance(value, int):
        return (str(value), value)
    return (f"{value:.{digits}f}", value)


def percent_cell(fraction: float | None) -> Cell:
    """A fraction shown in percent with 2 decimals."""
    if fraction is None or math.isnan(fraction):
        return ("nan", None)
    return (f"{100 * fraction:.2f}", 100 * fraction)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Cell]],
    *,
    sortable: bool = True,
    table_id: str = "",
    text_columns: Sequence[int] = (),
) -> str:
    """An HTML table; ``text_columns`` are left-aligned."""
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    kind = ' class="sortable"' if sortable else ""

    def align(i: int) -> str:
        return ' class="text"' if i in text_columns else ""

    head = "".join(f"<th{align(i)}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    lines = []
    for row in rows:
        cells = "".join(
            f'<td{align(i)} data-value="{html.escape("" if v is None else str(v))}">'
            f"{html.escape(text)}</td>"
            for i, (text, v) in enumerate(row)
        )
        lines.append(f"<tr>{cells}</tr>")
    body = "\n".join(lines)
    return (
        f"<table{ident}{kind}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"
    )


def page(title: str, sections: Sequence[str]) -> str:
    """One HTML document: the title, the given HTML sections, the inline style and script."""
    content = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{content}\n<script>{_JS}</script>\n</body>\n</html>\n"
    )
