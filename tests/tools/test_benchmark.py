"""The benchmark tool compares the configurations and reports sane numbers (no timing asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vanseg.tools import benchmark


def test_inference_comparison_rows() -> None:
    rows = benchmark.main(
        ["backbone=van_test", "head=light_ham", "head.ham_channels=64", "head.channels=64"]
        + ["--size", "32", "--warmup", "0", "--rounds", "1", "--device", "cpu"]
    )
    assert [r["config"] for r in rows] == ["plain fp32", "fast fp32", "fast bf16"]
    assert rows[0]["ratio"] == 1.0 and rows[0]["max_rel_diff"] == 0.0
    assert rows[1]["max_rel_diff"] <= 1e-4  # the fp32 fast path's accuracy rule
    assert 0 < rows[2]["max_rel_diff"] < 0.1  # bf16 rounds, but not wildly


@pytest.mark.slow
def test_benchmark_compares_fast_paths_with_the_plain_model(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    rows = benchmark.main(
        [
            "backbone=van_test",
            "head=fpn",
            "neck.out_channels=32",
            "head.channels=32",
            "--size",
            "64",
            "--warmup",
            "1",
            "--rounds",
            "2",
            "--train",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    assert [(r["mode"], r["config"]) for r in rows] == [
        ("inference", "plain fp32"),
        ("inference", "fast fp32"),
        ("inference", "fast bf16"),
        ("train step", "plain fp32"),
        ("train step", "fused AdamW"),
        ("train step", "fused AdamW + channels_last"),
        ("train step", "fused AdamW + channels_last + banded loss"),
    ]
    for r in rows:
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["ratio"] > 0
    plain = [r for r in rows if r["config"] == "plain fp32"]
    assert all(r["ratio"] == 1.0 for r in plain)
    assert plain[0]["max_rel_diff"] == 0.0
    assert rows[1]["max_rel_diff"] <= 1e-4  # the fp32 fast path's accuracy rule
    saved = json.loads(out.read_text())
    assert saved["model"] == "van_test + fpn" and len(saved["rows"]) == 7
