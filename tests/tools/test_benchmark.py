"""The benchmark tool runs and reports sane numbers (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from vanseg.tools import benchmark


def test_benchmark_smoke(tmp_path: Path) -> None:
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
            "--iters",
            "2",
            "--train",
            "--device",
            "cpu",
            "--json",
            str(out),
        ]
    )
    assert [(r["mode"], r["dtype"]) for r in rows] == [
        ("inference", "float32"),
        ("inference", "bfloat16"),
        ("train step", "float32"),
    ]
    for r in rows:
        assert r["median_ms"] > 0 and r["iqr_ms"] >= 0 and r["images_per_s"] > 0
    saved = json.loads(out.read_text())
    assert saved["model"] == "van_test + fpn" and len(saved["rows"]) == 3
