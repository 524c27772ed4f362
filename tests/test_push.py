"""Sharing: the export folder's model card and ``push=owner/name`` (upload mocked)."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
from omegaconf import OmegaConf

import vanseg
from vanseg.config.compose import compose_config, model_config
from vanseg.tools import export

NAMES = ["sky", "road", "tree"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = compose_config(
        ["backbone=van_test", "head=light_ham", "head.channels=32", "data=folder"]
        + ["data.root=/data/mine", "data.num_classes=3", f"data.class_names=[{','.join(NAMES)}]"]
    )
    mcfg = model_config(cfg)
    torch.manual_seed(0)
    model = vanseg.build_model_from_config(mcfg)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    data = OmegaConf.to_container(cfg.data, resolve=True)
    vanseg.save_model(model, mcfg, path, config={"data": data, "model": mcfg})
    return path


def _metrics(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.json"
    summary = {"mIoU": 61.25, "mAcc": 70.5, "aAcc": 88.03}
    path.write_text(json.dumps({"summary": summary, "protocol_text": "whole, 512"}))
    return path


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return OmegaConf.to_container(OmegaConf.create(card.split("---\n")[1]))


def test_push_uploads_the_folder_with_its_card(checkpoint, tmp_path, monkeypatch) -> None:
    calls = []

    class FakeApi:
        def __init__(self, token=None, library_name=None):
            calls.append(("init", token, library_name))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id, kwargs["exist_ok"]))

        def upload_folder(self, repo_id, folder_path, **kwargs):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            card = (Path(folder_path) / "README.md").read_text()
            calls.append(("upload", repo_id, files, card, kwargs["allow_patterns"]))
            return "https://huggingface.co/me/road-model/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    folder = tmp_path / "road-model"
    export.main(
        [f"ckpt_path={checkpoint}", "format=safetensors", f"output={folder}"]
        + [f"metrics={_metrics(tmp_path)}", "push=me/road-model", "dataset=my-roads"]
    )
    assert calls[0] == ("init", None, "vanseg")  # the token from huggingface_hub's usual places
    assert calls[1] == ("create", "me/road-model", True)
    _, repo, files, card, patterns = calls[2]
    assert repo == "me/road-model"
    assert files == ["README.md", "config.json", "model.safetensors"]
    assert set(patterns) == set(files)
    front = _front_matter(card)
    assert front["library_name"] == "vanseg"
    assert front["pipeline_tag"] == "image-segmentation"
    assert front["license"] == "apache-2.0" and front["datasets"] == ["my-roads"]
    assert front["class_names"] == NAMES
    (entry,) = front["model-index"]
    assert entry["name"] == "me/road-model"
    metrics = {m["type"]: m["value"] for m in entry["results"][0]["metrics"]}
    assert metrics == {"mIoU": 61.25, "mAcc": 70.5, "aAcc": 88.03}
    assert 'Segmenter.from_pretrained("me/road-model")' in card
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "sky", "1": "road", "2": "tree"}
    assert config["label2id"] == {"sky": 0, "road": 1, "tree": 2}
    assert vanseg.from_pretrained(folder).num_classes == 3  # still a loadable export


def test_card_without_metrics_has_no_model_index(checkpoint, tmp_path) -> None:
    folder = tmp_path / "plain"
    export.main([f"ckpt_path={checkpoint}", "format=safetensors", f"output={folder}"])
    front = _front_matter((folder / "README.md").read_text())
    assert "model-index" not in front and front["datasets"] == ["folder"]


def test_bad_push_and_metrics_are_one_line_exit_2(checkpoint, tmp_path, capsys) -> None:
    for option in ("push=not-a-repo-id", f"metrics={tmp_path / 'none.json'}"):
        with pytest.raises(SystemExit) as err:
            export.main(
                [f"ckpt_path={checkpoint}", "format=safetensors", f"output={tmp_path / 'x'}"]
                + [option]
            )
        assert err.value.code == 2
        assert option.split("=")[0] + "=" in capsys.readouterr().err
