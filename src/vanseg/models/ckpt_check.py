"""Say in one line what is wrong with a checkpoint file that ``torch.load`` refused.

``torch.load`` reports a zero-byte file as a bare ``EOFError``, a truncated archive as a zip
reader error naming no file, and random bytes as a refused pickle. :func:`diagnose` looks at the
file itself and tells the cases apart: empty, truncated or corrupt archive, not a checkpoint,
or a valid pickle holding objects beyond the allowed ones (only this case is fixed by
``unsafe_load``, and only for trusted files).
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from enum import Enum
from pathlib import Path

__all__ = ["Damage", "diagnose", "is_intact"]

_ZIP_MAGIC = b"PK\x03\x04"
#: Larger pickles are not walked op by op (only the file's first pickle matters).
_PICKLE_PROBE_BYTES = 64 << 20


class Damage(Enum):
    """What is wrong with a checkpoint file."""

    EMPTY = "is empty (0 bytes)"
    TRUNCATED = "is truncated or corrupt: its zip archive cannot be read"
    NOT_CHECKPOINT = "is not a checkpoint: neither a PyTorch archive nor a pickle"
    OBJECTS = "holds pickled Python objects beyond tensors and plain containers"
    UNREADABLE = "cannot be read as a checkpoint"


def _is_pickle(stream: io.BufferedIOBase) -> bool:
    """Whether ``stream`` starts with one complete, well-formed pickle."""
    try:
        for opcode, _, _ in pickletools.genops(stream):
            if opcode.name == "STOP":
                return True
    except Exception:  # genops raises ValueError, struct.error, UnicodeDecodeError, ...
        return False
    return False


def _zip_damage(path: Path) -> Damage | None:
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:  # a member fails its CRC check
                return Damage.TRUNCATED
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles:
                return Damage.NOT_CHECKPOINT
            with archive.open(pickles[0]) as member:
                if not _is_pickle(io.BufferedReader(member)):
                    return Damage.TRUNCATED
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return Damage.TRUNCATED
    return None


def diagnose(path: str | Path) -> Damage | None:
    """Inspect a file ``torch.load`` failed on; ``None`` means it looks like an intact file."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return Damage.EMPTY
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head == _ZIP_MAGIC:
            return _zip_damage(path)
        handle.seek(0)
        if size > _PICKLE_PROBE_BYTES:  # a huge legacy file: its first pickle is tiny
            handle = io.BytesIO(handle.read(_PICKLE_PROBE_BYTES))
        return None if _is_pickle(handle) else Damage.NOT_CHECKPOINT


def is_intact(path: str | Path) -> bool:
    """Cheap check that a file can be a readable checkpoint (central directory and CRCs)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    return diagnose(path) is None


def disallowed_globals(message: str) -> list[str]:
    """The ``module.name`` globals that ``torch.load(weights_only=True)`` refused, if named."""
    return sorted(set(re.findall(r"(?:Unsupported global|GLOBAL) ([\w.]+)", message)))
