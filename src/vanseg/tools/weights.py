"""List the published weights, or fetch them into the cache ahead of time.

    python -m vanseg.tools.weights list
    python -m vanseg.tools.weights get van_tiny_754 light_ham_van_base_ade20k
    python -m vanseg.tools.weights get --all

``get`` downloads each file once into the cache (``$VANSEG_CACHE``, else ``~/.cache/vanseg``),
resuming an interrupted transfer, checks it (published SHA-256, else the hash recorded on the
first download), converts segmentation models to vanseg checkpoints and prints the local
path. Where the network is out of reach, put the original file at the path that the error
names and run ``get`` again: it then only checks and converts.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vanseg.checkpoint.zoo import converted_path, resolve_weights
from vanseg.models.zoo import cache_dir, registry, weights_path
from vanseg.utils.cli import tool_parser, user_errors

__all__ = ["main"]

#: The command as users type it: starts every usage and error line.
PROG = "python -m vanseg.tools.weights"


def _list() -> None:
    print(f"cache: {cache_dir()}")
    for entry in registry().values():
        cached = weights_path(entry).is_file() or converted_path(entry.name).is_file()
        sha = "sha256 published" if entry.sha256 else "sha256 on first use"
        flag = "cached" if cached else "-"
        print(f"{entry.name:34} {entry.kind:12} {flag:6} {sha:19} {entry.what}")


@user_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns 0. Errors end it as every tool's errors do (exit 2)."""
    parser = tool_parser(PROG, __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the published names, their kind and whether cached")
    get = commands.add_parser("get", help="download (and convert) into the cache")
    get.add_argument("names", nargs="*", help="published names (see `list`)")
    get.add_argument("--all", action="store_true", help="every published name")
    get.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "list":
        _list()
        return 0
    names = list(registry()) if args.all else args.names
    if not names:
        get.error("name at least one published name, or pass --all")
    for name in names:
        print(f"{name}: {resolve_weights(name, progress=not args.no_progress)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
