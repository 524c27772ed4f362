"""The model card (``README.md``) of an export folder, for the Hugging Face Hub.

YAML front matter (``library_name: vanseg``, ``pipeline_tag: image-segmentation``, license,
dataset, the class list and, given an evaluation's ``metrics.json``, a ``model-index`` with
its mIoU/mAcc/aAcc), then a short body: what the model is and how to load it. The text is
written into the folder by `vanseg.checkpoint.hub.save_pretrained`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vanseg.checkpoint.metadata import ModelMeta
from vanseg.errors import InputNotFoundError

__all__ = ["METRIC_KEYS", "label_maps", "model_card", "read_eval_metrics"]

#: Summary metrics of an evaluation (percent, as ``eval.py`` writes them into metrics.json).
METRIC_KEYS = ("mIoU", "mAcc", "aAcc")


def label_maps(meta: ModelMeta) -> dict[str, dict[str, Any]]:
    """``{"id2label": {"0": name, ...}, "label2id": {name: 0, ...}}`` (transformers' keys)."""
    names = list(meta.class_names)
    return {
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
    }


def read_eval_metrics(path: str | Path) -> dict[str, Any]:
    """The summary and protocol of an ``eval.py`` ``metrics.json`` (``metrics=`` option)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"metrics={path}: no such file; give the metrics.json that eval.py wrote"
        )
    try:
        document = json.loads(path.read_text())
        summary = {key: document["summary"][key] for key in METRIC_KEYS}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InputNotFoundError(
            f"metrics={path} is not an eval.py metrics.json ({type(err).__name__}: {err})"
        ) from err
    return {"summary": summary, "protocol": document.get("protocol_text", "")}


def _front_matter(
    meta: ModelMeta, name: str, license: str, dataset: str | None, metrics: Mapping | None
) -> dict[str, Any]:
    front: dict[str, Any] = {
        "library_name": "vanseg",
        "pipeline_tag": "image-segmentation",
        "license": license,
        "tags": ["vanseg", "semantic-segmentation", "van", meta.family],
    }
    if dataset:
        front["datasets"] = [dataset]
    front["class_names"] = list(meta.class_names)
    if metrics:
        results = [
            {"type": key, "name": key, "value": value}
            for key, value in metrics["summary"].items()
            if value is not None
        ]
        front["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "image-segmentation", "name": "Semantic Segmentation"},
                        "dataset": {
                            "type": dataset or meta.data_name,
                            "name": dataset or meta.data_name,
                        },
                        "metrics": results,
                    }
                ],
            }
        ]
    return front


def model_card(
    meta: ModelMeta,
    name: str,
    license: str = "apache-2.0",
    dataset: str | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> str:
    """The card text: YAML front matter, then a short description.

    Args:
        meta: The exported model's metadata (classes, family, model config).
        name: The repository or folder name, used as the title and ``model-index`` name.
        license: SPDX-style license id of the weights.
        dataset: Dataset id (e.g. ``scene_parse_150``) or name; None omits it.
        metrics: :func:`read_eval_metrics` output; None omits the ``model-index``.
    """
    front = OmegaConf.to_yaml(
        OmegaConf.create(_front_matter(meta, name, license, dataset, metrics))
    )
    backbone = str(meta.model["backbone"]["_target_"]).rsplit(".", 1)[-1]
    head = str(meta.model["head"]["_target_"]).rsplit(".", 1)[-1]
    lines = [
        f"---\n{front}---",
        f"# {name}",
        f"Semantic segmentation with vanseg: {backbone} + {head}, "
        f"{meta.num_classes} classes ({', '.join(meta.class_names)}).",
        "```python\nimport vanseg\n\n"
        f'segmenter = vanseg.Segmenter.from_pretrained("{name}")\n'
        'result = segmenter("image.jpg")\n```',
    ]
    if metrics:
        row = " | ".join(str(metrics["summary"][k]) for k in METRIC_KEYS)
        lines.append(
            "| mIoU | mAcc | aAcc |\n|---|---|---|\n"
            f"| {row} |\n\nEvaluation protocol: {metrics['protocol'] or 'see metrics.json'}"
        )
    return "\n\n".join(lines) + "\n"
