"""OmegaConf resolvers that vanseg's configs use, registered by ``import vanseg``.

``${vanseg.fresh_dir:<path>}`` (``conf/hydra/default.yaml``) creates the run folder exclusively:
two runs started in the same second get ``<time>`` and ``<time>_1``.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from vanseg.utils.distributed import launcher_is_rank_zero

__all__ = ["fresh_dir", "register_resolvers"]

_made: dict[str, str] = {}


def fresh_dir(base: str) -> str:
    """Create and return ``base``, or ``base_1``, ``base_2``, ... if it exists (race-free).

    The same ``base`` gives the same folder for the rest of the process (Hydra resolves the
    run folder more than once).
    """
    if base in _made:
        return _made[base]
    if not launcher_is_rank_zero():  # srun/torchrun ranks > 0 join rank 0's folder
        return base
    Path(base).parent.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        candidate = base if n == 0 else f"{base}_{n}"
        try:
            os.mkdir(candidate)  # atomic: exactly one process creates it
        except FileExistsError:
            continue
        _made[base] = candidate
        return candidate
    raise RuntimeError(f"no free run folder name after {base}_9999")


def register_resolvers() -> None:
    """Register ``${vanseg.fresh_dir:<path>}`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver("vanseg.fresh_dir"):
        OmegaConf.register_new_resolver("vanseg.fresh_dir", fresh_dir, use_cache=True)
