"""``python -m vanseg.tools.export ckpt_path=... format=safetensors``: a shareable weights folder.

Writes ``model.safetensors`` and ``config.json`` from a vanseg checkpoint with
`vanseg.checkpoint.hub.save_pretrained`, which reads the weights back and checks every tensor.
Load the folder with ``vanseg.from_pretrained(folder)`` or
``vanseg.Segmenter.from_pretrained(folder)``; upload it to the Hub as a model repository to
load it by id.
"""

from __future__ import annotations

from pathlib import Path

from vanseg.checkpoint.file import load_checkpoint
from vanseg.checkpoint.hub import save_pretrained

__all__ = ["default_output", "export_safetensors"]


def default_output(ckpt_path: str | Path) -> Path:
    """``model.ckpt`` -> ``model-safetensors/`` beside it."""
    ckpt_path = Path(ckpt_path)
    return ckpt_path.with_name(f"{ckpt_path.stem}-safetensors")


def export_safetensors(
    ckpt_path: str | Path,
    output: str | Path | None = None,
    overwrite: bool = False,
    unsafe_load: bool = False,
) -> Path:
    """Export a checkpoint to a folder and verify the stored tensors; returns the folder.

    Raises:
        InputNotFoundError: No such checkpoint.
        CheckpointError: The checkpoint has no model config, or the tensors read back differ.
        OutputExistsError: The folder already holds an export (without ``overwrite``).
    """
    loaded = load_checkpoint(ckpt_path, unsafe_load)
    folder = Path(output) if output else default_output(ckpt_path)
    return save_pretrained(loaded.model, loaded.meta, folder, overwrite=overwrite)
