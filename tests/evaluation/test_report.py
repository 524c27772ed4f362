"""eval.py report=true: per_image.csv, worst/, report.html; refusals; 2 processes equal 1."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vanseg
from tests.evaluation.test_evaluate import (  # noqa: F401
    NUM_VAL,
    K,
    _cli,
    base,
    checkpoint,
    data_overrides,
    evaluate,
    load_val,
)
from vanseg.errors import ConfigError, OutputExistsError
from vanseg.evaluation.image_report import REPORT_FILES
from vanseg.inference.passes import predict_probs, set_eval_seed
from vanseg.inference.protocol import InferenceProtocol
from vanseg.tasks.evaluate import RESULT_FILES

WORST_K = 2


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "per_image.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _hand_scores(label: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """mIoU over classes in label or prediction, and aAcc, with plain numpy masks."""
    valid = label != 255
    ious = []
    for c in range(K):
        in_label, in_pred = (label == c) & valid, (pred == c) & valid
        union = (in_label | in_pred).sum()
        if union:
            ious.append((in_label & in_pred).sum() / union)
    return float(np.mean(ious)), float((label == pred)[valid].sum() / valid.sum())


@pytest.fixture(scope="module")
def report_run(checkpoint, data_overrides, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("report") / "out"
    overrides = [*base(checkpoint, out, data_overrides), "eval_seed=0", "report=true"]
    evaluate([*overrides, f"report_worst_k={WORST_K}"])
    return out


def test_report_files(report_run: Path) -> None:
    names = sorted(p.name for p in report_run.iterdir())
    assert names == sorted(RESULT_FILES + REPORT_FILES)
    rows = _rows(report_run)
    assert [int(r["index"]) for r in rows] == list(range(NUM_VAL))
    confmat = np.load(report_run / "confusion.npy")
    assert sum(int(r["pixels"]) for r in rows) == confmat.sum()  # every labelled pixel once


def test_per_image_rows_equal_a_hand_computation(report_run: Path, checkpoint) -> None:  # noqa: F811
    model = vanseg.load_model(checkpoint)
    set_eval_seed(model, 0)
    protocol = InferenceProtocol(base_scale=(256, 64), size_divisor=32)
    dataset = load_val(report_run)
    for row in _rows(report_run):
        image, label = dataset.load(int(row["index"]))
        pred = predict_probs(model, image, protocol)[0].argmax(0).numpy()
        miou, aacc = _hand_scores(label, pred)
        assert float(row["mIoU"]) == pytest.approx(100 * miou, abs=0.005)
        assert float(row["aAcc"]) == pytest.approx(100 * aacc, abs=0.005)
        assert row["image"] == dataset.names[int(row["index"])]


def test_worst_panels_are_the_lowest_rows(report_run: Path) -> None:
    rows = sorted(_rows(report_run), key=lambda r: (float(r["mIoU"]), int(r["index"])))
    expected = [f"{int(r['index']):06d}_{r['image']}.png" for r in rows[:WORST_K]]
    assert sorted(p.name for p in (report_run / "worst").iterdir()) == sorted(expected)
    page = (report_run / "report.html").read_text()
    shown = re.findall(r'<img src="worst/([^"]+)"', page)
    assert shown == expected  # worst first
    for src in re.findall(r'<img[^>]* src="([^"]+)"', page):
        assert (report_run / src).is_file(), src  # every picture next to the page
    table = page.split('id="per-class"')[1].split("</table>")[0]
    assert table.count("<tr>") == K + 1  # header + one row per class
    assert "http" not in page  # nothing fetched from the network


def test_report_keeps_the_dataset_numbers(report_run: Path, checkpoint, data_overrides, tmp_path):  # noqa: F811
    plain = tmp_path / "plain"
    evaluate([*base(checkpoint, plain, data_overrides), "eval_seed=0"])
    assert sorted(p.name for p in plain.iterdir()) == sorted(RESULT_FILES)
    assert np.array_equal(np.load(plain / "confusion.npy"), np.load(report_run / "confusion.npy"))
    summary = [json.loads((d / "metrics.json").read_text())["summary"] for d in (plain, report_run)]
    assert summary[0] == summary[1]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("report=maybe", r"report='maybe' must be true or false"),
        ("report_worst_k=-1", r"report_worst_k=-1 must be an integer >= 0"),
        ("report_panel_side=2", r"report_panel_side=2 must be an integer >= 16"),
    ],
)
def test_bad_report_options(option, message, checkpoint, tmp_path) -> None:  # noqa: F811
    overrides = [f"ckpt_path={checkpoint}", f"output={tmp_path}", "report=true", option]
    with pytest.raises(ConfigError, match=message):
        evaluate(overrides)


def test_an_existing_report_is_not_overwritten(checkpoint, data_overrides, tmp_path) -> None:  # noqa: F811
    (tmp_path / "report.html").write_text("mine")
    overrides = [*base(checkpoint, tmp_path, data_overrides), "report=true"]
    with pytest.raises(OutputExistsError, match=r"report.html already exists; pass overwrite"):
        evaluate(overrides)
    assert (tmp_path / "report.html").read_text() == "mine"
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_two_processes_write_the_single_process_report(
    report_run: Path,
    checkpoint,  # noqa: F811
    data_overrides,  # noqa: F811
    tmp_path: Path,
) -> None:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    args = [*base(checkpoint, tmp_path / "ddp", data_overrides), "eval_seed=0", "report=true"]
    args.append(f"report_worst_k={WORST_K}")
    proc = _cli(args, tmp_path, [torchrun, "--standalone", "--nproc_per_node", "2"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    ddp = tmp_path / "ddp"
    assert json.loads((ddp / "metrics.json").read_text())["world_size"] == 2
    assert (ddp / "per_image.csv").read_text() == (report_run / "per_image.csv").read_text()
    panels = sorted(p.name for p in (report_run / "worst").iterdir())
    assert sorted(p.name for p in (ddp / "worst").iterdir()) == panels
    for name in panels:  # the same pictures, pixel for pixel
        assert (ddp / "worst" / name).read_bytes() == (report_run / "worst" / name).read_bytes()

    def page(folder: Path) -> str:
        text = (folder / "report.html").read_text()
        return re.sub(r"processes: \d+", "", text.replace(str(folder), ""))

    assert page(ddp) == page(report_run)
    assert torch.equal(
        torch.from_numpy(np.load(ddp / "confusion.npy")),
        torch.from_numpy(np.load(report_run / "confusion.npy")),
    )
