"""Atomic, non-clobbering writes for every file vanseg writes itself.

A file is written to a temporary name in its destination folder and renamed into place, so a
reader (or a crash) never sees half a file. An existing destination is refused unless the
caller passes ``overwrite``; a destination that is one of the inputs is always refused.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vanseg.errors import OutputExistsError
from vanseg.utils.text import few

__all__ = [
    "write_atomic",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_destination",
    "refuse_existing",
]


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_existing(
    paths: Iterable[str | Path],
    overwrite: bool = False,
    option: str = "overwrite=true",
    instead: str = "choose another output folder",
) -> None:
    """The one "refuse to overwrite" rule: existing ``paths`` need ``overwrite``.

    Args:
        paths: Files (or folders) about to be written.
        overwrite: The user asked to replace them.
        option: How the user asks for overwriting, quoted in the message.
        instead: The other way out, quoted in the message.

    Raises:
        OutputExistsError: Some exist and ``overwrite`` is false; the message names them.
    """
    if overwrite:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise OutputExistsError(
            f"{few(existing)} already {verb}; pass {option} to replace, or {instead}"
        )


def check_destination(
    dst: str | Path,
    *,
    overwrite: bool = False,
    sources: Iterable[str | Path] = (),
    option: str = "overwrite=true",
) -> Path:
    """Refuse ``dst`` if it is one of ``sources`` (always) or exists (unless ``overwrite``).

    Args:
        dst: File about to be written.
        overwrite: Replace an existing ``dst``.
        sources: Input files that must never be replaced.
        option: How the user asks for overwriting, quoted in the message.

    Returns:
        ``dst`` as a path.

    Raises:
        OutputExistsError: The message names the file and what to do.
    """
    dst = Path(dst)
    for src in sources:
        if _same_file(dst, Path(src)):
            raise OutputExistsError(
                f"destination {dst} is the input file {src}; write the output to another path "
                "(an input is never overwritten, even with " + option + ")"
            )
    if dst.is_dir():
        raise OutputExistsError(f"destination {dst} is a folder; give a file path")
    refuse_existing([dst], overwrite, option, "choose another output path")
    return dst


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(
    dst: str | Path,
    *,
    overwrite: bool = False,
    sources: Iterable[str | Path] = (),
    option: str = "overwrite=true",
) -> Iterator[Path]:
    """Yield a temporary path beside ``dst``; on success it is renamed to ``dst``.

    The temporary name keeps ``dst``'s suffix, so writers that pick a format from it (PIL,
    ``np.save``) behave the same. On any exception the temporary file is removed and ``dst``
    is left untouched. See :func:`check_destination` for ``overwrite``/``sources``/``option``.
    """
    dst = check_destination(dst, overwrite=overwrite, sources=sources, option=option)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".tmp{dst.suffix}", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        if not overwrite and dst.exists():  # appeared while we were writing
            raise OutputExistsError(f"{dst} appeared while it was being written; not replaced")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(dst: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``dst`` atomically; see :func:`atomic_path`."""
    with atomic_path(dst, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(dst)


def atomic_write_text(dst: str | Path, text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``dst`` atomically; see :func:`atomic_path`."""
    return atomic_write_bytes(dst, text.encode("utf-8"), overwrite=overwrite)


def write_atomic(
    dst: str | Path, write: Callable[[Path], object], *, overwrite: bool = True
) -> Path:
    """Call ``write(tmp)`` for a temporary file beside ``dst``, then rename it to ``dst``.

    For writers that take a path (PIL, ``np.save``, safetensors). ``overwrite`` defaults to True
    because its callers refuse existing outputs up front (e.g. ``check_output``).
    """
    with atomic_path(dst, overwrite=overwrite) as tmp:
        write(tmp)
    return Path(dst)
