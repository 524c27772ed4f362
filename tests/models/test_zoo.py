"""Published weights by name, against a local HTTP server on 127.0.0.1 (never the network).

The registry is swapped for one whose URLs point at the local server (``VANSEG_ZOO``) and the
cache is a temporary folder (``VANSEG_CACHE``). The files are tiny fake originals in the
layouts of the VAN classification repository and of mmseg (`tests.models.mmseg_reference`).
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import pytest
import timm
import torch
import yaml

import vanseg
from tests.http_files import FileServer
from tests.models import mmseg_reference as ref
from vanseg.checkpoint.zoo import converted_path, resolve_weights
from vanseg.errors import USER_ERROR_EXIT, CheckpointError, ConfigError
from vanseg.models import zoo
from vanseg.tools.weights import main as weights_main

BACKBONE, SEGMENTATION = "van_test_in1k", "light_ham_van_test_ade20k"


def _saved(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def originals() -> dict[str, bytes]:
    """A VAN-Classification ImageNet file and an mmseg Light-Ham file, both of van_test size."""
    g = torch.Generator().manual_seed(0)
    imagenet = ref.backbone_state_dict("van_test", g, prefix="")
    imagenet.update({"head.weight": torch.randn(1000, 64), "head.bias": torch.zeros(1000)})
    return {
        "van_test_in1k.pth.tar": _saved({"state_dict": imagenet, "epoch": 300}),
        "seg.pth": _saved(ref.original_checkpoint("van_test", "light_ham")),
    }


@pytest.fixture
def server(originals):
    srv = FileServer(dict(originals))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def write_registry(path: Path, url, sha256: dict[str, str] | None = None) -> Path:
    sha256 = sha256 or {}
    entry = dict(source="tests/models/test_zoo.py", size=None, mirrors=[])
    data = {
        "backbones": {
            BACKBONE: dict(
                entry,
                what="fake VAN-Test ImageNet classifier",
                variant="van_test",
                url=url("van_test_in1k.pth.tar"),
                file="van_test_in1k.pth.tar",
                sha256=sha256.get(BACKBONE),
            )
        },
        "segmentation": {
            SEGMENTATION: dict(
                entry,
                what="fake Light-Ham + VAN-Test",
                backbone="van_test",
                head="light_ham",
                url=url("seg.pth"),
                file=f"{SEGMENTATION}.pth",
                sha256=sha256.get(SEGMENTATION),
            )
        },
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def registry(server, tmp_path, monkeypatch) -> Path:
    """The local registry and an empty cache; returns the cache folder."""
    monkeypatch.setenv(zoo.REGISTRY_ENV, str(write_registry(tmp_path / "zoo.yaml", server.url)))
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "cache"


def test_download_once_into_the_cache_and_record_the_hash(registry, server, originals):
    path = zoo.fetch(BACKBONE, progress=False)
    payload = originals["van_test_in1k.pth.tar"]
    assert path == registry / "weights" / "van_test_in1k.pth.tar"
    assert path.read_bytes() == payload
    record = path.with_name(path.name + ".sha256").read_text()
    assert record.split()[0] == hashlib.sha256(payload).hexdigest()  # trust on first use
    assert zoo.fetch(BACKBONE, progress=False) == path
    assert server.requests == [("van_test_in1k.pth.tar", None)]  # fetched once


def test_interrupted_transfer_resumes(registry, server, originals):
    server.cut_after = 1000
    with pytest.raises(CheckpointError) as info:
        zoo.fetch(BACKBONE, progress=False)
    message = str(info.value)
    assert "\n" not in message and "python -m vanseg.tools.weights get van_test_in1k" in message
    part = registry / "weights" / "van_test_in1k.pth.tar.part"
    assert part.stat().st_size == 1000
    path = zoo.fetch(BACKBONE, progress=False)
    assert server.requests[-1] == ("van_test_in1k.pth.tar", "bytes=1000-")
    assert path.read_bytes() == originals["van_test_in1k.pth.tar"] and not part.exists()


def test_published_hash_mismatch_is_refused_in_one_line(registry, server, tmp_path, monkeypatch):
    wrong = {BACKBONE: "0" * 64}
    monkeypatch.setenv(
        zoo.REGISTRY_ENV, str(write_registry(tmp_path / "z.yaml", server.url, wrong))
    )
    with pytest.raises(CheckpointError) as info:
        zoo.fetch(BACKBONE, progress=False)
    message = str(info.value)
    assert "\n" not in message and "0" * 64 in message and "not the published" in message
    assert not (registry / "weights" / "van_test_in1k.pth.tar").exists()  # deleted


def test_a_changed_file_after_the_first_download_is_refused(registry, server):
    path = zoo.fetch(BACKBONE, progress=False)
    path.unlink()
    server.files["van_test_in1k.pth.tar"] = _saved({"state_dict": {}})  # the source changed
    with pytest.raises(CheckpointError, match="first download"):
        zoo.fetch(BACKBONE, progress=False)


def test_a_web_page_instead_of_a_checkpoint_is_refused(registry, server):
    server.files["van_test_in1k.pth.tar"] = b"<!DOCTYPE html><html>Virus scan warning</html>"
    with pytest.raises(CheckpointError, match="web page"):
        zoo.fetch(BACKBONE, progress=False)


def test_the_cache_is_used_offline(registry, server, monkeypatch):
    path = resolve_weights(BACKBONE, progress=False)
    converted = resolve_weights(SEGMENTATION, progress=False)
    server.shutdown()
    server.server_close()
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    assert resolve_weights(BACKBONE) == path
    assert resolve_weights(SEGMENTATION) == converted == converted_path(SEGMENTATION)


def test_offline_without_the_file_is_one_line_and_exit_2(registry, monkeypatch, capsys):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    with pytest.raises(SystemExit) as info:
        weights_main(["get", BACKBONE, "--no-progress"])
    assert info.value.code == USER_ERROR_EXIT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("python -m vanseg.tools.weights: error: van_test_in1k:")
    assert str(registry / "weights" / "van_test_in1k.pth.tar") in err  # where to put it
    assert "`python -m vanseg.tools.weights get van_test_in1k`" in err  # what fetches it


def test_unreachable_source_is_the_same_line(registry, server):
    server.shutdown()
    server.server_close()  # nothing listens on the port any more
    with pytest.raises(CheckpointError) as info:
        zoo.fetch(BACKBONE, progress=False)
    message = str(info.value)
    assert "\n" not in message and "cannot be downloaded (Cannot reach" in message


def test_backbone_pretrained_name_loads_through_the_registry(registry, originals):
    model = vanseg.build_model("van_test", "light_ham", num_classes=5, pretrained=BACKBONE)
    original = torch.load(io.BytesIO(originals["van_test_in1k.pth.tar"]), weights_only=True)
    weight = original["state_dict"]["patch_embed1.proj.weight"]
    assert torch.equal(model.backbone.state_dict()["stages.0.patch_embed.proj.weight"], weight)


def test_timm_pretrained_true_uses_the_published_name(registry, originals):
    model = timm.create_model("van_test", pretrained=True)
    original = torch.load(io.BytesIO(originals["van_test_in1k.pth.tar"]), weights_only=True)
    weight = original["state_dict"]["block1.0.layer_scale_1"]
    assert any(torch.equal(v, weight) for v in model.state_dict().values())


def test_segmentation_name_is_converted_cached_and_runs(registry, originals):
    segmenter = vanseg.Segmenter.from_pretrained(SEGMENTATION)
    assert converted_path(SEGMENTATION).is_file()
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    state = torch.load(io.BytesIO(originals["seg.pth"]), weights_only=True)["state_dict"]
    with torch.no_grad():
        torch.manual_seed(7)
        theirs = ref.segmentor_forward(images, state, "van_test", "light_ham")
        torch.manual_seed(7)
        ours = segmenter.model(images)
    assert ours.shape == (1, 150, 64, 64)
    assert (ours - theirs).abs().max().item() <= 1e-4
    assert isinstance(vanseg.from_pretrained(SEGMENTATION), torch.nn.Module)  # cached now
    mask = segmenter(torch.randint(0, 255, (48, 40, 3), dtype=torch.uint8).numpy()).mask
    assert mask.shape == (48, 40)


def test_names_of_the_wrong_kind_or_unknown_are_refused(registry):
    with pytest.raises(ConfigError, match="not a published segmentation name"):
        resolve_weights(BACKBONE, "segmentation")
    with pytest.raises(ConfigError, match="known: light_ham_van_test_ade20k, van_test_in1k"):
        resolve_weights("van_tiny_999")


# ----------------------------------------------------------------------- the packaged registry
REPO = Path(__file__).resolve().parents[2]


def test_packaged_registry_lists_the_published_files(monkeypatch):
    monkeypatch.delenv(zoo.REGISTRY_ENV, raising=False)
    entries = zoo.registry()
    backbones = {n for n, e in entries.items() if e.kind == "backbone"}
    assert backbones == {"van_tiny_754", "van_small_811", "van_base_828", "van_large_839"}
    segmentation = [e for e in entries.values() if e.kind == "segmentation"]
    # VAN-Segmentation README: Light-Ham x4 + D256, HamNet x4, FPN x4; UperNet has no links.
    assert len(segmentation) == 13 and not any(e.head == "upernet" for e in segmentation)
    for e in segmentation:
        assert e.name == f"{e.head}_{e.backbone}_ade20k"
        assert (REPO / "conf/head" / f"{e.head}.yaml").is_file()
        assert (REPO / "conf/backbone" / f"{e.backbone}.yaml").is_file()
        assert (
            e.url.startswith("https://drive.google.com/file/d/") and "VAN-Segmentation" in e.source
        )
    for name in backbones:
        e = entries[name]
        assert e.file == f"{name}.pth.tar" and e.name.startswith(e.variant + "_")
        assert "VAN-Classification" in e.source
    readme = (REPO / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in entries), "README 'Published weights' table"


def test_drive_links_use_the_direct_download_form():
    url = "https://drive.google.com/file/d/1-wVJgdztqWYv-MvCp6deFO0pDpciAg6h/view?usp=sharing"
    assert zoo.direct_url(url) == (
        "https://drive.usercontent.google.com/download?id=1-wVJgdztqWYv-MvCp6deFO0pDpciAg6h"
        "&export=download&confirm=t"
    )
    assert zoo.direct_url("http://127.0.0.1:1/x.pth") == "http://127.0.0.1:1/x.pth"
