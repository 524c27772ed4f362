"""Text for one-line messages."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["few"]


def few(items: Sequence[object], limit: int = 5) -> str:
    """The first ``limit`` items joined by commas, and how many more there are."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(str(item) for item in items[:limit]) + more
