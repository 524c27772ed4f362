"""Published weights by name: the registry (``zoo.yaml``) and the download cache.

``zoo.yaml`` beside this module lists the four ImageNet VAN classifiers of the VAN
classification repository (``van_tiny_754`` ...) and the ADE20K models of the VAN-Segmentation
README that have a download link (``light_ham_van_base_ade20k`` ...), each with its official URL
and the page that publishes it. `fetch` downloads a file once into the cache
(``$VANSEG_CACHE``, else ``$XDG_CACHE_HOME/vanseg``, else ``~/.cache/vanseg``), resuming an
interrupted transfer, and checks it:

* against the entry's ``sha256`` when one is published;
* otherwise against the hash recorded on its first download (``<file>.sha256`` beside it:
  trust on first use), so a later download or a replaced file that differs is refused.

Offline (``VANSEG_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``), a cached file is used as is; a missing
one ends in one line naming the file, where to put it by hand and the command that fetches it.
``VANSEG_ZOO=<yaml>`` replaces the registry (mirrors, tests). Converting a segmentation
checkpoint is `vanseg.checkpoint.zoo.resolve_weights`; this module only fetches originals.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

from vanseg.errors import CheckpointError, ConfigError
from vanseg.utils.fetch import download, file_digest

__all__ = [
    "CACHE_ENV",
    "FETCH_COMMAND",
    "OFFLINE_ENV",
    "REGISTRY_ENV",
    "ZooEntry",
    "cache_dir",
    "direct_url",
    "download_lock",
    "fetch",
    "get_entry",
    "is_zoo_name",
    "registry",
    "weights_path",
]

Kind = Literal["backbone", "segmentation"]

REGISTRY_ENV = "VANSEG_ZOO"
CACHE_ENV = "VANSEG_CACHE"
OFFLINE_ENV = "VANSEG_OFFLINE"
#: The command that fetches a name ahead of time (`vanseg.tools.weights`).
FETCH_COMMAND = "python -m vanseg.tools.weights get"

_PACKAGED = Path(__file__).with_name("zoo.yaml")
_SECTIONS: dict[str, Kind] = {"backbones": "backbone", "segmentation": "segmentation"}
_DRIVE = re.compile(r"https://drive\.google\.com/file/d/([\w-]+)")
#: The first bytes of a file that is a web page, not a checkpoint (Drive's warning pages).
_HTML = (b"<!doctype", b"<html")


@dataclass(frozen=True)
class ZooEntry:
    """One published file: where it comes from and what it must be."""

    name: str
    kind: Kind
    what: str
    url: str
    source: str
    file: str
    size: int | None = None
    sha256: str | None = None
    variant: str | None = None  # backbone entries: the vanseg model function
    backbone: str | None = None  # segmentation entries: the vanseg backbone= choice
    head: str | None = None  # segmentation entries: the vanseg head= choice
    mirrors: tuple[str, ...] = ()


def _registry_file() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or _PACKAGED)


@cache
def _read(path: Path, mtime: float) -> dict[str, ZooEntry]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(
            f"cannot read the weights registry {path} ({REGISTRY_ENV}): {err}"
        ) from err
    entries: dict[str, ZooEntry] = {}
    for section, kind in _SECTIONS.items():
        for name, fields in ((data or {}).get(section) or {}).items():
            try:
                fields = dict(fields)
                fields["mirrors"] = tuple(fields.get("mirrors") or ())
                entries[name] = ZooEntry(name=name, kind=kind, **fields)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{path}: entry {name!r} is malformed ({err})") from err
    return entries


def registry() -> dict[str, ZooEntry]:
    """Every entry of the registry (the packaged ``zoo.yaml`` or ``$VANSEG_ZOO``), by name."""
    path = _registry_file()
    try:
        mtime = path.stat().st_mtime
    except OSError as err:
        raise ConfigError(f"weights registry {path} ({REGISTRY_ENV}) not found: {err}") from err
    return _read(path, mtime)


def is_zoo_name(text: str | os.PathLike) -> bool:
    """Whether ``text`` is a registry name (a bare word, not a path)."""
    text = str(text)
    return "/" not in text and os.sep not in text and text in registry()


def get_entry(name: str, kind: Kind | None = None) -> ZooEntry:
    """The entry called ``name``; with ``kind``, it must be of that kind."""
    entries = registry()
    entry = entries.get(name)
    if entry is None or (kind is not None and entry.kind != kind):
        known = sorted(n for n, e in entries.items() if kind is None or e.kind == kind)
        raise ConfigError(
            f"{name!r} is not a published {kind or 'weights'} name; known: {', '.join(known)} "
            "(python -m vanseg.tools.weights list)"
        )
    return entry


def cache_dir() -> Path:
    """``$VANSEG_CACHE``, else ``$XDG_CACHE_HOME/vanseg``, else ``~/.cache/vanseg``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "vanseg"


def weights_path(entry: ZooEntry) -> Path:
    """Where the original file of ``entry`` lives in the cache."""
    return cache_dir() / "weights" / entry.file


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def direct_url(url: str) -> str:
    """A Google Drive viewer link in its direct-download form; other URLs unchanged."""
    match = _DRIVE.match(url)
    if not match:
        return url
    return (
        f"https://drive.usercontent.google.com/download?id={match.group(1)}"
        "&export=download&confirm=t"
    )


def offline() -> bool:
    """Whether ``VANSEG_OFFLINE`` or ``HF_HUB_OFFLINE`` forbids the network."""
    return any(
        os.environ.get(var, "").strip().lower() not in ("", "0", "false", "no")
        for var in (OFFLINE_ENV, "HF_HUB_OFFLINE")
    )


def unavailable_message(entry: ZooEntry, reason: str) -> str:
    """The one line for a file that is neither cached nor downloadable."""
    return (
        f"{entry.name}: {entry.file} is not in the cache and cannot be downloaded ({reason}); "
        f"put the file from {entry.url} at {weights_path(entry)} by hand, or run "
        f"`{FETCH_COMMAND} {entry.name}` where the network is reachable"
    )


def _check(entry: ZooEntry, path: Path) -> None:
    """Refuse a web page or a file whose hash differs; record the hash of a first download."""
    with path.open("rb") as f:
        head = f.read(64).lstrip().lower()
    if head.startswith(_HTML):
        path.unlink()
        raise CheckpointError(
            f"{entry.name}: {entry.url} returned a web page, not a checkpoint (the link is gone "
            f"or asks for a confirmation); deleted it. Put the file at {path} by hand"
        )
    record = _record_path(path)
    expected, origin = entry.sha256, "the published"
    if expected is None and record.is_file():
        expected, origin = record.read_text().split()[0], f"the first download's ({record})"
    actual = file_digest(path, "sha256")
    if expected is None:
        record.write_text(f"{actual}  {entry.file}\n")
        return
    if actual != expected.lower():
        path.unlink()
        raise CheckpointError(
            f"{entry.name}: {path} has sha256 {actual}, not {origin} {expected}; deleted it. "
            f"Run `{FETCH_COMMAND} {entry.name}` again (delete {record.name} only if the "
            "publisher replaced the file)"
        )


@contextmanager
def download_lock(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively, so that processes (DDP ranks) download one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with path.with_name(path.name + ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(name: str, kind: Kind | None = None, progress: bool = True) -> Path:
    """The cached original file of ``name``, downloaded (resumably) and checked if needed.

    Raises:
        ConfigError: ``name`` is not in the registry (or not of ``kind``).
        CheckpointError: Offline or unreachable with no cached file, a web page instead of
            a checkpoint, or a hash that differs from the published or recorded one.
    """
    entry = get_entry(name, kind)
    path = weights_path(entry)
    if path.is_file() and (entry.sha256 or _record_path(path).is_file()):
        _check(entry, path)  # nothing to write: a read-only cache works too
        return path
    with download_lock(path):
        _fetch_missing(entry, path, progress)
        _check(entry, path)
    return path


def _fetch_missing(entry: ZooEntry, path: Path, progress: bool) -> None:
    if not path.is_file():
        if offline():
            raise CheckpointError(unavailable_message(entry, f"offline: {OFFLINE_ENV} is set"))
        try:
            download(
                direct_url(entry.url),
                path,
                expected_size=entry.size,
                progress=progress,
                error=CheckpointError,
            )
        except CheckpointError as err:
            reason = str(err).strip().splitlines()[0].rstrip(".")
            raise CheckpointError(unavailable_message(entry, reason)) from err
