"""Download, verify and unpack ADE20K (ADEChallengeData2016).

    python -m vanseg.data.download ade20k --root data/ade

fetches ``ADEChallengeData2016.zip`` (about 0.9 GB) from the official MIT server into
``<root>``, resuming a partial download (HTTP Range), checks its size against the server's
and its SHA-1 against the published one, unpacks it to ``<root>/ADEChallengeData2016`` and
checks the layout (20,210 training and 2,000 validation pairs). Train with
``data.root=<root>/ADEChallengeData2016``. URL, checksum and expected counts can be overridden
(for mirrors, and for tests against a small local archive).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vanseg.data.ade20k import duplicates_message, scan_split
from vanseg.errors import DatasetError, InputNotFoundError
from vanseg.utils.cli import tool_parser, user_errors

__all__ = ["ADE20K_SHA1", "ADE20K_URL", "download", "unpack", "verify_layout"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.data.download"

ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
#: SHA-1 of ADEChallengeData2016.zip as published with GluonCV's ADE20K preparation script.
ADE20K_SHA1 = "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
ADE20K_FOLDER = "ADEChallengeData2016"
ADE20K_COUNTS = {"training": 20210, "validation": 2000}
_CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _parse_checksum(checksum: str) -> tuple[str, str]:
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
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` if present, and verify it.

    Args:
        url: HTTP(S) URL.
        dest: Final file path; data accumulates in ``<dest>.part`` until complete.
        checksum: ``"<algorithm>:<hex>"`` (e.g. ``"sha1:..."``) to verify, or ``None``.
        expected_size: Expected size in bytes, or ``None`` to trust the server's.
        progress: Show a progress bar.
        timeout: Socket timeout in seconds.

    Returns:
        ``dest``, complete and verified.

    Raises:
        DatasetError: Network failure, short download, or size/checksum mismatch. A partial
            download is kept so that the next call resumes it; a complete but wrong file is
            deleted.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        _fetch(url, part, expected_size, progress, timeout)
        part.rename(dest)
    _verify(dest, checksum, expected_size)
    return dest


def _fetch(url: str, part: Path, expected_size: int | None, progress: bool, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except HTTPError as err:
        if err.code == 416 and offset and (expected_size is None or offset == expected_size):
            return  # the partial file already holds everything the server has
        raise DatasetError(f"Download of {url} failed: HTTP {err.code} {err.reason}") from err
    except URLError as err:
        raise DatasetError(f"Cannot reach {url}: {err.reason}. Check the network.") from err
    with response:
        if offset and response.status == 206:
            match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                raise DatasetError(f"{url}: unexpected Content-Range for a resumed download.")
            total = int(match.group(2)) if match.group(2) != "*" else None
            mode = "ab"
        else:  # a fresh download, or a server that ignores Range: start over
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        if expected_size is not None and total is not None and total != expected_size:
            raise DatasetError(
                f"{url} has {total} bytes but {expected_size} were expected; wrong URL or a "
                "changed archive (override the expectation with --size)."
            )
        with part.open(mode) as f, _progress_bar(progress) as bar:
            task = bar.add_task(part.name, total=total, completed=offset)
            try:
                while block := response.read(_CHUNK):
                    f.write(block)
                    bar.advance(task, len(block))
            except (OSError, http.client.HTTPException) as err:
                raise DatasetError(
                    f"Download of {url} interrupted ({err}); run the same command again to "
                    f"resume from {part}."
                ) from err
    size = part.stat().st_size
    if total is not None and size != total:
        raise DatasetError(
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


def _verify(path: Path, checksum: str | None, expected_size: int | None) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        path.unlink()
        raise DatasetError(
            f"{path} has {size} bytes, expected {expected_size}; deleted it, run again."
        )
    if checksum is not None:
        algorithm, expected = _parse_checksum(checksum)
        actual = file_digest(path, algorithm)
        if actual != expected:
            path.unlink()
            raise DatasetError(
                f"{path}: {algorithm} is {actual}, expected {expected}; the file is corrupt or "
                "not the official archive. Deleted it; run again."
            )


def unpack(archive: str | Path, root: str | Path, folder: str = ADE20K_FOLDER) -> Path:
    """Extract ``archive`` (which holds ``folder/...``) so that ``<root>/<folder>`` appears whole.

    Extraction goes to a temporary folder inside ``root`` first, so an interrupted run never
    leaves a half-filled ``<root>/<folder>``.
    """
    root = Path(root)
    target = root / folder
    if target.exists():
        return target
    try:
        with zipfile.ZipFile(archive) as zf, tempfile.TemporaryDirectory(dir=root) as tmp:
            bad = zf.testzip()
            if bad is not None:
                raise DatasetError(f"{archive} is corrupt (first bad member: {bad}).")
            zf.extractall(tmp)  # zipfile drops absolute and ".." parts of member names
            extracted = Path(tmp) / folder
            if not extracted.is_dir():
                raise DatasetError(f"{archive} does not contain a top-level {folder}/ folder.")
            extracted.rename(target)
    except zipfile.BadZipFile as err:
        raise DatasetError(f"{archive} is not a valid zip file: {err}") from err
    return target


def verify_layout(
    root: str | Path, counts: dict[str, int], image_suffixes: Sequence[str] = (".jpg",)
) -> None:
    """Check that each split has exactly ``counts[split]`` image/label pairs and nothing unpaired.

    Raises:
        DatasetError: Missing folders, unpaired files or wrong counts.
    """
    problems = []
    for split, expected in counts.items():
        try:
            pairs, no_label, no_image, duplicates = scan_split(root, split, image_suffixes)
        except InputNotFoundError as err:
            problems.append(str(err))
            continue
        if duplicates:
            problems.append(duplicates_message(split, duplicates))
        if no_label or no_image:
            problems.append(
                f"{split}: {len(no_label)} images without label, {len(no_image)} "
                "labels without image"
            )
        if len(pairs) != expected:
            problems.append(f"{split}: {len(pairs)} image/label pairs, expected {expected}")
    if problems:
        raise DatasetError(f"Unexpected layout in {root}:\n  " + "\n  ".join(problems))


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0. A `DatasetError` ends it as every tool's errors do."""
    parser = tool_parser(PROG, __doc__)
    parser.add_argument("dataset", choices=["ade20k"])
    parser.add_argument("--root", default="data/ade", help="folder for the zip and the dataset")
    parser.add_argument("--url", default=ADE20K_URL)
    parser.add_argument(
        "--checksum",
        default=f"sha1:{ADE20K_SHA1}",
        help="'<algorithm>:<hex>' of the archive, or 'none' to skip",
    )
    parser.add_argument("--size", type=int, default=None, help="expected archive size in bytes")
    parser.add_argument("--train-count", type=int, default=ADE20K_COUNTS["training"])
    parser.add_argument("--val-count", type=int, default=ADE20K_COUNTS["validation"])
    parser.add_argument("--keep-zip", action="store_true", help="keep the archive after unpacking")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"training": args.train_count, "validation": args.val_count}
    target = root / ADE20K_FOLDER
    if not target.exists():
        checksum = None if args.checksum.lower() == "none" else args.checksum
        archive = download(
            args.url,
            root / (Path(urlparse(args.url).path).name or "ADEChallengeData2016.zip"),
            checksum,
            args.size,
            progress=not args.no_progress,
        )
        print(f"unpacking {archive}")
        unpack(archive, root)
        if not args.keep_zip:
            archive.unlink()
    verify_layout(target, counts)
    print(f"ADE20K ready at {target}: train with data.root={target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
