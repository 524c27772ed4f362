"""``python -m vanseg.tools.export ckpt_path=... format=safetensors``: a shareable weights folder.

Writes ``model.safetensors`` and ``config.json`` (`vanseg.hub.save_pretrained`) from a vanseg
checkpoint, then reads the file back and checks that every tensor equals the checkpoint's.
Load the folder with ``vanseg.from_pretrained(folder)`` or
``vanseg.Segmenter.from_pretrained(folder)``; upload it to the Hub as a model repository to
load it by id.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vanseg.evaluation.checkpoint import load_checkpoint
from vanseg.hub import WEIGHTS_NAME, PretrainedError, save_pretrained

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
        CheckpointInputError: The checkpoint is missing or has no model config.
        PretrainedError: The folder already holds an export (without ``overwrite``), or the
            tensors read back differ from the checkpoint's.
    """
    from safetensors.torch import load_file

    loaded = load_checkpoint(ckpt_path, unsafe_load)
    folder = Path(output) if output else default_output(ckpt_path)
    save_pretrained(loaded.model, loaded.meta, folder, overwrite=overwrite)
    stored = load_file(str(folder / WEIGHTS_NAME))
    state = loaded.model.state_dict()
    differing = [k for k in state if k not in stored or not torch.equal(stored[k], state[k])]
    if differing or len(stored) != len(state):
        raise PretrainedError(
            f"{folder / WEIGHTS_NAME} does not hold the checkpoint's tensors "
            f"({len(differing)} differ or are missing, e.g. {differing[:3]}); export again"
        )
    return folder
