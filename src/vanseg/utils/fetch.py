"""Resumable HTTP(S) download of one file, with a size and checksum check.

`download` fetches a URL into ``<dest>.part`` (resuming it with an HTTP Range request when it
exists), renames it to ``dest`` when complete and verifies size and checksum. It is shared by
the dataset download (`vanseg.data.download`) and the published weights
(`vanseg.models.zoo`); ``error`` chooses the `VansegError` class its failures raise.
"""

from __future__ import annotations

import hashlib
import http.client
import re
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vanseg.errors import DatasetError, VansegError

__all__ = ["download", "file_digest", "parse_checksum"]

_CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def parse_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, value = checksum.partition(":")
    if not value or algorithm not in hashlib.algorithms_available:
        raise ValueError(
            f"checksum must look like 'sha1:<hex>' or 'sha256:<hex>', got {checksum!r}"
        )
    return algorithm, value.lower()


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": "vanseg-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urlopen(Request(url, headers=headers), timeout=timeout)


def download(
    url: str,
    dest: str | Path,
    checksum: str | None = None,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    error: type[VansegError] = DatasetError,
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present, and verify it.

    Args:
        url: HTTP(S) URL.
        dest: Final file path; data accumulates in ``<dest>.part`` until complete.
        checksum: ``"<algorithm>:<hex>"`` (e.g. ``"sha1:..."``) to verify, or ``None``.
        expected_size: Expected size in bytes, or ``None`` to trust the server's.
        progress: Show a progress bar.
        timeout: Socket timeout in seconds.
        error: The `VansegError` class raised on failure (`DatasetError` for datasets,
            `CheckpointError` for weights).

    Returns:
        ``dest``, complete and verified.

    Raises:
        error: Network failure, short download, or size/checksum mismatch. A partial
            download is kept so that the next call resumes it; a complete but wrong file is
            deleted.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        _fetch(url, part, expected_size, progress, timeout, error)
        part.rename(dest)
    _verify(dest, checksum, expected_size, error)
    return dest


def _fetch(
    url: str,
    part: Path,
    expected_size: int | None,
    progress: bool,
    timeout: float,
    error: type[VansegError],
) -> None:
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except HTTPError as err:
        if err.code == 416 and offset and (expected_size is None or offset == expected_size):
            return  # the partial file already holds everything the server has
        raise error(f"Download of {url} failed: HTTP {err.code} {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:  # URLError, refused, reset, timeout
        reason = err.reason if isinstance(err, URLError) else err
        raise error(f"Cannot reach {url}: {reason}. Check the network.") from err
    with response:
        if offset and response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise error(f"{url}: unexpected Content-Range for a resumed download.")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:  # a fresh download, or a server that ignores Range: start over
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        if expected_size is not None and total is not None and total != expected_size:
            raise error(
                f"{url} has {total} bytes but {expected_size} were expected; wrong URL or a "
                "changed file (a mirror may need another expected size)."
            )
        with part.open(mode) as f, _progress_bar(progress) as bar:
            task = bar.add_task(part.name, total=total, completed=offset)
            try:
                while block := response.read(_CHUNK):
                    f.write(block)
                    bar.advance(task, len(block))
            except (OSError, http.client.HTTPException) as err:
                raise error(
                    f"Download of {url} interrupted ({err}); run the same command again to "
                    f"resume from {part}."
                ) from err
    size = part.stat().st_size
    if total is not None and size != total:
        raise error(
            f"Download of {url} stopped at {size} of {total} bytes; run the same command again "
            f"to resume from {part}."
        )


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _verify(
    path: Path, checksum: str | None, expected_size: int | None, error: type[VansegError]
) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        path.unlink()
        raise error(f"{path} has {size} bytes, expected {expected_size}; deleted it, run again.")
    if checksum is not None:
        algorithm, expected = parse_checksum(checksum)
        actual = file_digest(path, algorithm)
        if actual != expected:
            path.unlink()
            raise error(
                f"{path}: {algorithm} is {actual}, expected {expected}; the file is corrupt or "
                "not the official one. Deleted it; run again."
            )
