"""Kept for older imports: the tools' argument helpers live in `vanseg.utils.cli`."""

from __future__ import annotations

from vanseg.utils.cli import split_overrides, tool_parser

__all__ = ["split_overrides", "tool_parser"]
