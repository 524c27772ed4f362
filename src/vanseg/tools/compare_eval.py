"""Compare two evaluations: summary, per-class and per-image deltas (B minus A).

    python -m vanseg.tools.compare_eval RUN_A RUN_B [-o compare.html] [--top 20] [--overwrite]

RUN_A and RUN_B are output folders of ``eval.py report=true`` (``metrics.json`` and
``per_image.csv``). Prints the mIoU/mAcc/aAcc deltas, the per-class IoU/Acc deltas (largest
drop first) and the ``--top`` images whose per-image mIoU changed most (matched by image name),
as tables; ``-o`` also writes them as one offline HTML page (sortable tables). Numbers are in
percent as ``metrics.json`` and ``per_image.csv`` store them (2 decimals); deltas are rounded
to 2 decimals. An existing page is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from vanseg.errors import ConfigError, InputNotFoundError
from vanseg.evaluation.html_page import Cell, cell, page, table
from vanseg.evaluation.per_image import read_per_image_csv
from vanseg.utils.atomic import check_destination, write_atomic
from vanseg.utils.cli import tool_parser, user_errors

__all__ = ["Comparison", "compare_runs", "comparison_page", "main"]

PROG = "python -m vanseg.tools.compare_eval"
_SUMMARY_KEYS = ("mIoU", "mAcc", "aAcc")


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    return round(b - a, 2)


def _number(text: str) -> float | None:
    value = float(text)
    return None if math.isnan(value) else value


@dataclass
class Comparison:
    """Rows of the three tables; numbers in percent, None where undefined.

    Attributes:
        summary: ``(metric, A, B, delta)`` for mIoU, mAcc, aAcc.
        classes: ``(index, class, IoU A, IoU B, dIoU, Acc A, Acc B, dAcc)``, largest drop first.
        images: ``(image, mIoU A, mIoU B, delta)``, largest absolute change first.
        unmatched: Images present in only one of the two runs.
    """

    run_a: Path
    run_b: Path
    summary: list[tuple[str, float | None, float | None, float | None]]
    classes: list[tuple[int, str, Any, Any, float | None, Any, Any, float | None]]
    images: list[tuple[str, float, float, float]]
    unmatched: int


def _metrics(run: Path) -> dict[str, Any]:
    path = run / "metrics.json"
    if not path.is_file():
        raise InputNotFoundError(f"{path} not found: give the output folder of an eval.py run")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from err


def _image_miou(run: Path) -> dict[str, float | None]:
    rows = read_per_image_csv(run / "per_image.csv")
    return {row["image"]: _number(row["mIoU"]) for row in rows}


def _sort_drop(row: tuple) -> tuple[float, int]:
    return (math.inf if row[4] is None else row[4], row[0])


def compare_runs(run_a: Path, run_b: Path, top: int = 20) -> Comparison:
    """Read both runs and compute the deltas (B minus A).

    Raises:
        InputNotFoundError: A run lacks ``metrics.json`` or ``per_image.csv``.
        ConfigError: The two runs have different classes.
    """
    a, b = _metrics(run_a), _metrics(run_b)
    images_a, images_b = _image_miou(run_a), _image_miou(run_b)
    names_a = [r["class"] for r in a.get("per_class", [])]
    names_b = [r["class"] for r in b.get("per_class", [])]
    if names_a != names_b:
        raise ConfigError(
            f"{run_a} and {run_b} have different classes ({len(names_a)} vs {len(names_b)}); "
            "compare evaluations on the same dataset"
        )
    summary = [
        (k, a["summary"].get(k), b["summary"].get(k), _delta(a["summary"][k], b["summary"][k]))
        for k in _SUMMARY_KEYS
    ]
    classes = [
        (
            *(ra["index"], ra["class"], ra["IoU"], rb["IoU"], _delta(ra["IoU"], rb["IoU"])),
            *(ra["Acc"], rb["Acc"], _delta(ra["Acc"], rb["Acc"])),
        )
        for ra, rb in zip(a["per_class"], b["per_class"], strict=True)
    ]
    classes.sort(key=_sort_drop)
    both = [n for n in images_a if n in images_b]
    changed = []
    for order, name in enumerate(both):
        ma, mb = images_a[name], images_b[name]
        if ma is not None and mb is not None:
            changed.append((order, name, ma, mb, round(mb - ma, 2)))
    changed.sort(key=lambda r: (-abs(r[4]), r[0]))
    images = [(name, ma, mb, d) for _, name, ma, mb, d in changed[:top]]
    unmatched = len(set(images_a) ^ set(images_b))
    return Comparison(run_a, run_b, summary, classes, images, unmatched)


def _text(value: float | None) -> str:
    return "nan" if value is None else f"{value:.2f}"


def _signed(value: float | None) -> str:
    return "nan" if value is None else f"{value:+.2f}"


def print_comparison(cmp: Comparison, console: Console | None = None) -> None:
    """The three tables, with rich."""
    console = console or Console(soft_wrap=True)
    console.print(f"A: {cmp.run_a}\nB: {cmp.run_b}\n(B minus A, percent)", markup=False)
    specs = [
        ("Summary", ["metric", "A", "B", "delta"], [(m, a, b, d) for m, a, b, d in cmp.summary]),
        (
            "Per class (largest IoU drop first)",
            ["#", "class", "IoU A", "IoU B", "dIoU", "Acc A", "Acc B", "dAcc"],
            cmp.classes,
        ),
        (
            f"Images that changed most (top {len(cmp.images)})",
            ["image", "A", "B", "delta"],
            cmp.images,
        ),
    ]
    for title, headers, rows in specs:
        view = Table(title=title)
        for h in headers:
            view.add_column(h, justify="left" if h in ("metric", "class", "image") else "right")
        for row in rows:
            shown = []
            for h, v in zip(headers, row, strict=True):
                if isinstance(v, str) or h == "#":
                    shown.append(str(v))
                else:
                    shown.append(_signed(v) if h.startswith("d") else _text(v))
            view.add_row(*shown)
        console.print(view)
    if cmp.unmatched:
        console.print(f"{cmp.unmatched} image(s) are in only one of the two runs")


def _cells(row: Sequence[Any], signed: Sequence[bool]) -> list[Cell]:
    out: list[Cell] = []
    for value, is_delta in zip(row, signed, strict=True):
        if isinstance(value, (str, int)) or value is None:
            out.append(cell(value))
        else:
            out.append((_signed(value) if is_delta else _text(value), value))
    return out


def comparison_page(cmp: Comparison) -> str:
    """The three tables as one offline HTML page."""
    head = (
        f"<p>A: {html.escape(str(cmp.run_a))}<br>B: {html.escape(str(cmp.run_b))}<br>"
        "Deltas are B minus A, in percent. Click a column header to sort.</p>"
    )
    summary = table(
        ["metric", "A", "B", "delta"],
        [_cells(r, (False, False, False, True)) for r in cmp.summary],
        table_id="summary",
        text_columns=(0,),
    )
    classes = table(
        ["#", "class", "IoU A", "IoU B", "dIoU", "Acc A", "Acc B", "dAcc"],
        [_cells(r, (False,) * 4 + (True, False, False, True)) for r in cmp.classes],
        table_id="classes",
        text_columns=(1,),
    )
    images = table(
        ["image", "mIoU A", "mIoU B", "delta"],
        [_cells(r, (False, False, False, True)) for r in cmp.images],
        table_id="images",
        text_columns=(0,),
    )
    note = f"<p>{cmp.unmatched} image(s) are in only one of the two runs.</p>"
    return page(
        "Evaluation comparison",
        [
            head,
            "<h2>Summary</h2>",
            summary,
            "<h2>Per class</h2>",
            classes,
            "<h2>Images that changed most</h2>",
            images,
            note if cmp.unmatched else "",
        ],
    )


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> Comparison:
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("run_a", metavar="RUN_A", help="output folder of eval.py report=true")
    parser.add_argument("run_b", metavar="RUN_B", help="the other output folder")
    parser.add_argument("-o", "--output", help="also write the comparison as an HTML page")
    parser.add_argument("--top", type=int, default=20, help="images listed (default 20)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing page")
    args = parser.parse_args(argv)
    if args.top < 0:
        parser.error(f"--top={args.top} must be >= 0")
    output = None
    if args.output:
        output = check_destination(args.output, overwrite=args.overwrite, option="--overwrite")
    cmp = compare_runs(Path(args.run_a), Path(args.run_b), args.top)
    print_comparison(cmp)
    if output is not None:
        text = comparison_page(cmp)
        write_atomic(output, lambda p: p.write_text(text, encoding="utf-8"), overwrite=True)
        print(f"comparison page: {output}")
    return cmp


if __name__ == "__main__":
    main()
