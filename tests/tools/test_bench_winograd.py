"""bench_winograd: the UperNet shapes, a tiny interleaved run, argument errors."""

from __future__ import annotations

import pytest

from vanseg.tools import bench_winograd
from vanseg.tools.bench_winograd import SHAPES, VARIANTS, ConvShape, bench_shape

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shapes_are_the_upernet_3x3_convs_of_van_base() -> None:
    # channels 512, in_channels (64, 128, 320, 512) at 512x512: strides 4..32 -> 128..16.
    assert SHAPES["fpn_bottleneck"] == ConvShape("fpn_bottleneck", 4 * 512, 512, 128)
    assert SHAPES["bottleneck"] == ConvShape("bottleneck", 512 + 4 * 512, 512, 16)
    assert [SHAPES[f"fpn_convs.{i}"].size for i in range(3)] == [128, 64, 32]
    assert SHAPES["fpn_bottleneck"].gmacs == pytest.approx(154.6, abs=0.05)


def test_tiny_run_reports_every_variant() -> None:
    rows = bench_shape(
        ConvShape("tiny", 8, 4, 9), rounds=2, tile=4, autocast_tile=2, workspace_mib=1
    )
    assert list(rows) == list(VARIANTS)
    assert rows["conv fp32"]["ratio"] == 1.0 and rows["conv fp32"]["rel_diff"] == 0.0
    assert rows["winograd fp32"]["rel_diff"] < 1e-5
    assert 0 < rows["winograd bf16"]["rel_diff"] < 2e-2
    assert all(r["ms"] > 0 for r in rows.values())


def test_unknown_shape_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench_winograd.main(["--shapes", "fpn_bottleneck,nope"])
    assert exc.value.code == 2
    assert "unknown ['nope']" in capsys.readouterr().err
