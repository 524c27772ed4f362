"""What a prediction run has started and finished, so that ``resume=true`` can trust it.

Every rank keeps ``<output>/.predict-journal/rank<r>.txt``: a line ``begin <name>`` before the
outputs of an image are written and ``done <name>`` once all of them are in place (each file
itself is written atomically). Lines are flushed as they are written, so a killed process
leaves every finished image marked ``done``; an image caught in flight is at most ``begin``.

``resume=true`` skips an image when it is marked done (here or in an earlier ``report.json``)
and every output exists, decodes and has the image's size (:func:`outputs_complete`); others
are predicted again. Outputs named in a journal are predict.py's own, so ``resume`` and
``overwrite`` may replace them. A successful run lists everything in ``report.json`` and removes
the journal.
"""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

__all__ = [
    "JOURNAL_DIR",
    "Journal",
    "finished_stems",
    "outputs_complete",
    "remove_journals",
    "remove_unfinished_writes",
    "started_stems",
]

JOURNAL_DIR = ".predict-journal"


class Journal:
    """This rank's journal file; ``begin``/``done`` may be called from writer threads."""

    def __init__(self, output: Path, rank: int) -> None:
        self.path = output / JOURNAL_DIR / f"rank{rank}.txt"
        self._lock = threading.Lock()
        self._file: TextIO | None = None

    def __enter__(self) -> Journal:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in __exit__)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _line(self, word: str, stem: str) -> None:
        assert self._file is not None, "use the journal as a context manager"
        with self._lock:
            self._file.write(f"{word} {stem}\n")
            self._file.flush()  # in the OS's hands: survives a killed process

    def begin(self, stem: str) -> None:
        self._line("begin", stem)

    def done(self, stem: str) -> None:
        self._line("done", stem)


def _journal_lines(output: Path) -> list[tuple[str, str]]:
    lines = []
    for path in sorted((output / JOURNAL_DIR).glob("rank*.txt")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            word, _, stem = line.partition(" ")
            if word in ("begin", "done") and stem:
                lines.append((word, stem))
    return lines


def _report_stems(output: Path) -> set[str]:
    try:
        report = json.loads((output / "report.json").read_text())
        listed = [*report["written"], *report.get("already_complete", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {Path(str(p)).stem for p in listed}


def finished_stems(output: Path) -> set[str]:
    """Names whose outputs an earlier run into ``output`` finished (journal or report)."""
    return {stem for word, stem in _journal_lines(output) if word == "done"} | _report_stems(output)


def started_stems(output: Path) -> set[str]:
    """Names whose outputs an earlier run into ``output`` wrote or began to write."""
    return {stem for _, stem in _journal_lines(output)} | _report_stems(output)


def remove_journals(output: Path) -> None:
    folder = output / JOURNAL_DIR
    for path in folder.glob("rank*.txt"):
        path.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def remove_unfinished_writes(output: Path, stems: set[str]) -> list[Path]:
    """Remove the temporary files that a killed run left beside its outputs; returns them.

    `vanseg.utils.atomic.atomic_path` writes ``.<name>.<random>.tmp<suffix>`` and renames it;
    a run killed in between leaves it behind. Only those of ``stems`` (names this output
    folder's journal or report lists) are removed.
    """
    removed = []
    for folder in ("labels", "overlays", "probs"):
        for path in sorted((output / folder).glob(".*.tmp.*")):
            name = path.name[1:].rsplit(".tmp.", 1)[0]  # "<stem>.<random>"
            if name.rsplit(".", 1)[0] in stems:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def outputs_complete(image: Path, targets: tuple[Path, ...], num_classes: int) -> bool:
    """True if every output of ``image`` exists, decodes whole and fits the image's size."""
    try:
        with Image.open(image) as source:
            width, height = source.size
        for target in targets:
            if target.suffix == ".npz":
                with np.load(target) as stored:  # a zip: its CRC is checked on reading
                    probs = stored["probs"]
                if probs.shape != (num_classes, height, width):
                    return False
                continue
            with Image.open(target) as picture:
                picture.load()  # a cut-short PNG or JPEG raises here
                size = picture.size
            if target.parent.name == "labels" and size != (width, height):
                return False
            if size[0] < width or size[1] < height:  # an overlay has its legend on the right
                return False
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return False
    return True
