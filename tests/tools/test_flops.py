"""Params/MACs against docs/reference.md §1 (the published convention)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vanseg
from vanseg.tools import flops

# docs/reference.md §1: params_all and torchprofile MACs at 1x3x512x512, eval mode.
REFERENCE = {
    ("van_tiny", "light_ham_d256"): (4_208_630, 6_469_120_003),
    ("van_tiny", "light_ham"): (4_866_134, 11_278_731_267),
    ("van_small", "light_ham"): (14_707_286, 21_357_232_131),
    ("van_base", "light_ham"): (27_423_958, 34_427_076_611),
    ("van_large", "light_ham"): (45_611_094, 55_002_300_419),
    ("van_tiny", "hamnet"): (11_940_236, 50_790_760_451),
    ("van_small", "hamnet"): (24_168_172, 100_603_494_403),
    ("van_base", "hamnet"): (36_884_844, 153_559_203_843),
    ("van_large", "hamnet"): (55_071_980, 227_734_683_651),
    ("van_tiny", "upernet"): (32_133_004, 214_689_453_568),
    ("van_small", "upernet"): (43_836_652, 224_013_633_536),
    ("van_base", "upernet"): (56_553_324, 237_083_478_016),
    ("van_large", "upernet"): (74_740_460, 257_658_701_824),
    ("van_tiny", "fpn"): (7_984_374, 25_934_102_528),
    ("van_small", "fpn"): (17_615_446, 34_723_233_792),
    ("van_base", "fpn"): (30_332_118, 47_793_078_272),
    ("van_large", "fpn"): (48_519_254, 68_368_302_080),
}
# The README's Params/FLOPs strings (docs/reference.md §1); UperNet-Tiny's has no unit.
README = {
    ("van_tiny", "light_ham_d256"): ("4.2M", "6.5G"),
    ("van_tiny", "light_ham"): ("4.9M", "11.3G"),
    ("van_small", "light_ham"): ("14.7M", "21.4G"),
    ("van_base", "light_ham"): ("27.4M", "34.4G"),
    ("van_large", "light_ham"): ("45.6M", "55.0G"),
    ("van_tiny", "hamnet"): ("11.9M", "50.8G"),
    ("van_small", "hamnet"): ("24.2M", "100.6G"),
    ("van_base", "hamnet"): ("36.9M", "153.6G"),
    ("van_large", "hamnet"): ("55.1M", "227.7G"),
    ("van_tiny", "upernet"): ("32.1M", "214.7"),
    ("van_small", "upernet"): ("43.8M", "224.0G"),
    ("van_base", "upernet"): ("56.6M", "237.1G"),
    ("van_large", "upernet"): ("74.7M", "257.7G"),
}
# Ham heads: the original's NMF makes two more integer shape multiplications, which the
# JIT trace counts as 1 MAC each (see vanseg.tools.flops).
NMF_SHAPE_MACS = 2


def _check(backbone: str, head: str, params: int, macs: int) -> None:
    ref_params, ref_macs = REFERENCE[(backbone, head)]
    assert params == ref_params
    slack = NMF_SHAPE_MACS if "ham" in head else 0
    assert 0 <= ref_macs - macs <= slack
    assert round(macs / 1e9, 1) == round(ref_macs / 1e9, 1)


@pytest.mark.parametrize(("backbone", "head"), [("van_tiny", "light_ham"), ("van_tiny", "fpn")])
def test_measure_matches_reference(backbone: str, head: str) -> None:
    result = flops.measure(vanseg.build_model(backbone, head))
    _check(backbone, head, result.params, result.macs)


@pytest.mark.slow
def test_all_17_configurations(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flops.main(["--all", "--json", str(tmp_path / "all.json")])
    rows = json.loads((tmp_path / "all.json").read_text())
    assert len(rows) == 17
    for row in rows:
        key = (row["backbone"], row["head"])
        _check(*key, row["params"], row["macs"])
        if key in README:  # the 13 published rows, after the README's rounding
            params, gflops = README[key]
            assert f"{row['params'] / 1e6:.1f}M" == params
            assert f"{row['macs'] / 1e9:.1f}" == gflops.rstrip("G")
        assert row["match"] is True
    assert capsys.readouterr().out.count(" yes ") == 17
