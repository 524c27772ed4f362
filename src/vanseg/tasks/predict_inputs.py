"""Which files ``predict.py`` segments: one image, a folder's images or a glob's.

Files without an image extension are passed over and listed (never skipped silently).
"""

from __future__ import annotations

import glob
from pathlib import Path

from vanseg.errors import ConfigError
from vanseg.utils.text import few

__all__ = ["IMAGE_EXTENSIONS", "find_images"]

#: Extensions (lower case) that a folder or glob input treats as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(spec: str | Path) -> tuple[list[Path], list[Path]]:
    """Resolve ``input``: one file, a folder (not recursive) or a glob (``**`` recurses).

    Returns:
        The sorted image files, and the files that were passed over because their extension is
        not in :data:`IMAGE_EXTENSIONS` (a single file is always taken).

    Raises:
        ConfigError: Nothing matches, or the folder / glob holds no image.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return [path], []
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        where = f"folder {path}"
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        where = f"glob {text!r}"
    else:
        raise ConfigError(f"input {text} does not exist (give an image, a folder or a glob)")
    images = [p for p in files if _is_image(p)]
    ignored = [p for p in files if not _is_image(p)]
    if not images:
        found = f"; it holds only {few(ignored)}" if ignored else ""
        raise ConfigError(
            f"{where} holds no images with extensions {', '.join(IMAGE_EXTENSIONS)}{found}"
        )
    return images, ignored
