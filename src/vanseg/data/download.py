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

import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from vanseg.data.ade20k import duplicates_message, scan_split
from vanseg.errors import DatasetError, InputNotFoundError
from vanseg.utils.cli import tool_parser, user_errors
from vanseg.utils.fetch import download, file_digest

__all__ = ["ADE20K_SHA1", "ADE20K_URL", "download", "file_digest", "unpack", "verify_layout"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.data.download"

ADE20K_URL = "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"
#: SHA-1 of ADEChallengeData2016.zip as published with GluonCV's ADE20K preparation script.
ADE20K_SHA1 = "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"
ADE20K_FOLDER = "ADEChallengeData2016"
ADE20K_COUNTS = {"training": 20210, "validation": 2000}


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
