"""Argument handling shared by the ``python -m vanseg.tools.<x>`` commands.

Tools take Hydra overrides (``backbone=van_base head=light_ham``) exactly like ``train.py``,
plus a few ``--flags`` of their own, which argparse handles.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def split_overrides(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """Parse ``--flags`` with ``parser``; every ``key=value`` argument is a Hydra override."""
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. backbone=van_base head=upernet"
    )
    args = parser.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"expected Hydra overrides of the form key=value, got {bad}")
    return args, list(args.overrides)
