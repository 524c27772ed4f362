"""``python -m vanseg.tools.export ckpt_path=... format=safetensors``: a shareable weights folder.

Writes ``model.safetensors``, ``config.json`` (with ``id2label``/``label2id``) and a model card
``README.md`` from a vanseg checkpoint with `vanseg.checkpoint.hub.save_pretrained`, which reads
the weights back and checks every tensor. ``metrics=path/to/metrics.json`` (from ``eval.py``)
puts mIoU/mAcc/aAcc into the card's ``model-index``; ``push=owner/name`` uploads the folder to
the Hub (`vanseg.checkpoint.hub.push_to_hub`; the token from ``HF_TOKEN`` or
``huggingface-cli login``). Load the folder with ``vanseg.from_pretrained(folder)`` or
``vanseg.Segmenter.from_pretrained(folder)``, or by its Hub id once pushed.
"""

from __future__ import annotations

from pathlib import Path

from vanseg.checkpoint.card import model_card, read_eval_metrics
from vanseg.checkpoint.file import load_checkpoint
from vanseg.checkpoint.hub import looks_like_hub_id, push_to_hub, save_pretrained
from vanseg.errors import ConfigError

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
    metrics: str | Path | None = None,
    license: str = "apache-2.0",
    dataset: str | None = None,
    push: str | None = None,
) -> Path:
    """Export a checkpoint to a folder (weights verified, model card), optionally push it.

    Args:
        metrics: An ``eval.py`` ``metrics.json`` whose summary goes into the card.
        license: License id of the weights in the card.
        dataset: Dataset id or name in the card (default: the data config's name).
        push: A Hub repository ``owner/name`` to upload the folder to.

    Raises:
        ConfigError: ``push`` is not a Hub id.
        InputNotFoundError: No such checkpoint or metrics file.
        CheckpointError: The checkpoint has no model config, the tensors read back differ,
            or the upload failed.
        OutputExistsError: The folder already holds an export (without ``overwrite``).
    """
    if push and not looks_like_hub_id(push):  # before any file is written
        raise ConfigError(f"push={push} is not a Hub repository id; give owner/name")
    summary = read_eval_metrics(metrics) if metrics else None
    loaded = load_checkpoint(ckpt_path, unsafe_load)
    folder = Path(output) if output else default_output(ckpt_path)
    name = push or folder.name
    card = model_card(loaded.meta, name, license, dataset or loaded.meta.data_name, summary)
    save_pretrained(loaded.model, loaded.meta, folder, overwrite=overwrite, card=card)
    if push:
        push_to_hub(folder, push)
    return folder
