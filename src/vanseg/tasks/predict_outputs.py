"""Where ``predict.py`` writes, and what it may replace there.

* every input image ``<name>.<ext>`` gets ``labels/<name>.png`` and ``overlays/<name>.jpg``
  (``outputs=both``, the default), one of them (``labels``, ``overlays``), or
  ``probs/<name>.npz`` (``probs``);
* an input is never an output, and ``overwrite=true`` replaces only the outputs that an earlier
  prediction into the same folder lists in its ``report.json`` or journal
  (`vanseg.tasks.predict_journal`; `refuse_existing` for the rest); ``resume=true`` keeps them;
* a ``.predict.lock`` (holding the pid) keeps a second run out while one writes; a lock file that
  predict.py did not write is refused, never deleted.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from vanseg.errors import ConfigError, OutputExistsError
from vanseg.tasks.predict_journal import started_stems
from vanseg.utils.atomic import refuse_existing
from vanseg.utils.text import few

__all__ = [
    "OUTPUT_KINDS",
    "OutputLock",
    "check_output_folder",
    "check_outputs",
    "output_targets",
]

#: ``outputs`` values and the files each writes per image: (folder, suffix).
OUTPUT_KINDS: dict[str, tuple[tuple[str, str], ...]] = {
    "both": (("labels", ".png"), ("overlays", ".jpg")),
    "labels": (("labels", ".png"),),
    "overlays": (("overlays", ".jpg"),),
    "probs": (("probs", ".npz"),),
}
_ALL_KINDS = (("labels", ".png"), ("overlays", ".jpg"), ("probs", ".npz"))

log = logging.getLogger("vanseg")


def output_targets(
    images: Sequence[Path], output: Path, outputs: str = "both"
) -> dict[Path, tuple[Path, ...]]:
    """The files each image gets (see :data:`OUTPUT_KINDS`); clashing names are refused."""
    if outputs not in OUTPUT_KINDS:
        raise ConfigError(f"predict.outputs={outputs!r} is not one of {'|'.join(OUTPUT_KINDS)}")
    by_stem: dict[str, list[Path]] = {}
    for path in images:
        by_stem.setdefault(path.stem, []).append(path)
    clashes = [p for paths in by_stem.values() if len(paths) > 1 for p in paths]
    if clashes:
        raise ConfigError(
            f"several inputs share a file name and would write the same outputs: {few(clashes)}"
            "; predict them into separate output folders"
        )
    kinds = OUTPUT_KINDS[outputs]
    return {p: tuple(output / d / f"{p.stem}{suffix}" for d, suffix in kinds) for p in images}


def check_output_folder(output: Path, images: Sequence[Path]) -> None:
    """Refuse an ``output`` that is a file or lies under one (the input image, say)."""
    existing = next(p for p in (output, *output.parents) if p.exists())
    if existing.is_dir():
        return
    where = "is a file" if existing == output else f"lies under {existing}, a file"
    if existing.resolve() in {p.resolve() for p in images}:
        where += ", the input image itself" if existing == output else " (the input image)"
    raise ConfigError(
        f"output={output} {where}; give a folder for labels/ and overlays/ (created if needed), "
        f"e.g. output={existing.parent / 'predictions'}"
    )


def check_outputs(
    targets: dict[Path, tuple[Path, ...]], output: Path, overwrite: bool, resume: bool = False
) -> None:
    """Refuse outputs that would replace an input, or files that predict.py did not write.

    ``overwrite=true`` replaces only the outputs of an earlier prediction into ``output``: the
    outputs of the images listed in its ``report.json`` or journal. Any other existing
    file there (ground-truth labels, say) is never replaced, and an input never. ``resume=true``
    accepts those same earlier outputs (it keeps the complete ones).
    """
    sources = {p.resolve() for p in targets}
    clobbered = [t for pair in targets.values() for t in pair if t.resolve() in sources]
    if clobbered:
        raise OutputExistsError(
            f"output={output} would write over input images ({few(clobbered)}); "
            "choose an output folder that holds no inputs"
        )
    outputs = [t for pair in targets.values() for t in pair]
    if not resume:
        refuse_existing(
            [*outputs, output / "report.json"],
            overwrite,
            "overwrite=true (replace) or resume=true (keep complete outputs)",
        )
    existing = [t for t in outputs if t.exists()]
    ours = _earlier_outputs(output)
    foreign = [t for t in existing if t.resolve() not in ours]
    if foreign:
        raise OutputExistsError(
            f"{few(foreign)} exist but were not written by predict.py into {output} (not in "
            f"its report.json or journal); overwrite=true and resume=true accept only earlier "
            "predictions, so choose another output folder"
        )


def _earlier_outputs(output: Path) -> set[Path]:
    """The outputs that an earlier run's ``report.json`` or journal says it wrote or began."""
    return {
        (output / folder / f"{stem}{suffix}").resolve()
        for stem in started_stems(output)
        for folder, suffix in _ALL_KINDS
    }


class OutputLock:
    """``<output>/.predict.lock`` for the length of a run: two runs never share a folder.

    The lock holds the process id; a lock whose process is gone (a killed run) is taken over
    with a log line.
    """

    def __init__(self, output: Path) -> None:
        self.path = output / ".predict.lock"

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pid = self._owner()
                if pid is None:  # not a lock this module wrote: never delete it
                    raise ConfigError(
                        f"{self.path} exists but is not a predict.py lock; remove it or choose "
                        "another output folder"
                    ) from None
                if _alive(pid):
                    raise ConfigError(
                        f"another predict.py (process {pid}) is writing into "
                        f"{self.path.parent}; wait for it to finish or choose another output "
                        "folder"
                    ) from None
                log.warning("removing the stale lock %s (process %s is gone)", self.path, pid)
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise ConfigError(f"cannot lock {self.path.parent}: remove {self.path} and try again")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)

    def _owner(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
