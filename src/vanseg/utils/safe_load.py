"""``torch.load`` without running code, and one line on what is wrong with a file it refused.

:func:`load_file` is the only place where vanseg calls ``torch.load``.

``torch.load`` reports a zero-byte file as a bare ``EOFError``, a truncated archive as a zip
reader error naming no file, and random bytes as a refused pickle. :func:`diagnose` looks at the
file itself and tells the cases apart: empty, truncated or corrupt archive, not a checkpoint,
or a valid pickle holding objects beyond the allowed ones (only this case is fixed by
``unsafe_load``, and only for trusted files).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import zipfile
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import torch

from vanseg.errors import CheckpointError, InputNotFoundError

__all__ = ["Damage", "diagnose", "is_intact", "load_file", "unwrap_state_dict"]

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


def load_file(
    path: str | Path, unsafe_load: bool = False, option: str = "unsafe_load", mmap: bool = False
) -> Any:
    """``torch.load`` on the CPU with ``weights_only=True`` unless explicitly allowed.

    Args:
        path: File to read.
        unsafe_load: Allow full unpickling (runs code stored in the file: trusted files only).
        option: Name of the user-facing switch, quoted in the error message.
        mmap: Map the tensors instead of reading them (for a quick look at large files).
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not unsafe_load, mmap=mmap)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, KeyError...
        raise _explain(path, err, unsafe_load, option) from err


def _explain(path: Path, err: Exception, unsafe_load: bool, option: str) -> CheckpointError:
    """One line naming the file and what is wrong with it (see `vanseg.utils.safe_load`)."""
    damage = diagnose(path)
    cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if damage is None and not unsafe_load and isinstance(err, pickle.UnpicklingError):
        found = disallowed_globals(str(err))
        switch = f"pass {option}" if option.startswith("--") else f"set {option}=true"
        return CheckpointError(
            f"{path} {Damage.OBJECTS.value}"
            + (f" ({', '.join(found)})" if found else "")
            + ", so torch.load(weights_only=True) refused it; unpickling such a file can run "
            f"arbitrary code. If you trust its source, {switch} to load it fully "
            "(timm training checkpoints, for example, carry an argparse.Namespace)."
        )
    if damage is None:
        return CheckpointError(
            f"{path} {Damage.UNREADABLE.value} ({type(err).__name__}: {cause}); was it written "
            "by torch.save?"
        )
    size = path.stat().st_size
    what = f"{path} {damage.value}" + ("" if damage is Damage.EMPTY else f" ({size} bytes)")
    return CheckpointError(
        f"{what}; it was probably cut short while being written or copied. Copy or download "
        "it again, or use another checkpoint."
        if damage in (Damage.EMPTY, Damage.TRUNCATED)
        else f"{what}; pass a file written by train.py, vanseg.save_model or torch.save."
    )


def unwrap_state_dict(obj: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The tensor dict of a checkpoint: under ``state_dict`` or ``model``, or the object."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(
            f"{path}: expected a state dict of tensors (optionally under 'state_dict'), "
            f"got {type(obj).__name__}"
        )
    return dict(obj)
