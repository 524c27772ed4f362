"""Published weights by name as local files: the originals, and converted segmentation models.

`resolve_weights` is what every name-taking option calls (``Segmenter.from_pretrained(name)``,
``vanseg.from_pretrained(name)``, ``model.init_from=<name>``, ``python -m vanseg.tools.weights
get``). A backbone name gives the original ImageNet file of the VAN classification repository
(`vanseg.models.zoo.fetch`; ``backbone.pretrained=<name>`` goes there directly). A segmentation
name gives a vanseg checkpoint: the original mmseg file is fetched, read with ``weights_only``
loading, converted for the registry's backbone/head (`vanseg.checkpoint.mmseg.convert`) and
cached as ``<cache>/converted/<name>.ckpt``, which later calls use without the network.
"""

from __future__ import annotations

from pathlib import Path

from vanseg.checkpoint.mmseg import convert
from vanseg.models.zoo import Kind, cache_dir, download_lock, fetch, get_entry

__all__ = ["converted_path", "resolve_weights"]


def converted_path(name: str) -> Path:
    """Where the converted vanseg checkpoint of segmentation name ``name`` is cached."""
    return cache_dir() / "converted" / f"{name}.ckpt"


def resolve_weights(name: str, kind: Kind | None = None, progress: bool = True) -> Path:
    """A local file for the published name ``name``, fetched (and converted) once.

    Args:
        name: A registry name (``python -m vanseg.tools.weights list``).
        kind: ``"backbone"`` or ``"segmentation"`` to insist on one kind; None takes either.
        progress: Show a download progress bar.

    Returns:
        For a backbone name, the original ImageNet checkpoint (load it with
        `vanseg.models.pretrained.load_pretrained_backbone`); for a segmentation name, a
        vanseg checkpoint (`vanseg.load_model`, `Segmenter.from_checkpoint`).

    Raises:
        ConfigError: Unknown name, or a name of the other kind.
        CheckpointError: Not cached and not downloadable (one line: where to put the file and
            the command that fetches it), a hash mismatch, or a file that does not convert.
    """
    entry = get_entry(name, kind)
    if entry.kind == "backbone":
        return fetch(name, "backbone", progress=progress)
    converted = converted_path(name)
    if converted.is_file():
        return converted
    original = fetch(name, "segmentation", progress=progress)
    with download_lock(converted):  # another process may be converting it
        if not converted.is_file():
            convert(original, converted, [f"backbone={entry.backbone}", f"head={entry.head}"])
    return converted
