"""Every pass's network input equals the original test pipeline's, bit for bit (issue 8).

The reference is the independent re-statement in ``original_test_pipeline.py`` (cv2 calls of
mmcv 1.x, no vanseg code); vanseg's inputs come from `pass_input`, the one function that
``eval.py``, ``predict.py``, slide mode and TTA use.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from tests.evaluation import original_test_pipeline as original
from vanseg.inference.preprocess import pass_input
from vanseg.inference.protocol import MS_RATIOS, InferenceProtocol

# (h, w): keep-ratio size a multiple of 32 and not, long panoramas both ways, tiny images,
# ADE's typical 512x683, odd sizes whose ratio-0.75 bounds round differently.
NAMED_SIZES = [
    (512, 683),
    (512, 512),
    (256, 256),
    (50, 400),
    (400, 50),
    (31, 1000),
    (1, 1),
    (1, 7),
    (3, 2),
    (17, 23),
    (65, 47),
    (333, 500),
    (375, 500),
]


def random_sizes(count: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return [(int(h), int(w)) for h, w in rng.integers(1, 700, size=(count, 2))]


def rgb_image(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth gradients plus noise, so that interpolation rounding matters everywhere."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = (np.stack([ys * 7 + xs * 3, xs * 5 - ys, ys + xs], axis=-1) % 256).astype(np.int64)
    noise = rng.integers(-40, 41, size=(height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


ULP_AT_4 = 2.0**-21  # float32 spacing in [2, 4)


def normalised_by_hand(raw: torch.Tensor) -> torch.Tensor:
    """What the original should have fed for a one-pixel-wide image that OpenCV 5.1 left raw.

    On such a release mmcv's in-place ``cv2.subtract`` / ``cv2.multiply`` do nothing, so the
    re-statement returns the RGB pixel values themselves (integers 0..255); vanseg normalises
    them. Here the normalisation is computed by hand in float64 and rounded to float32;
    OpenCV 5.1 rounds the product in float32, hence a tolerance of one ulp (|values| < 4).
    """
    assert torch.equal(raw, raw.round()) and 0 <= raw.min() and raw.max() <= 255, "not raw"
    mean = np.array(original.MEAN, np.float32).astype(np.float64).reshape(1, 3, 1, 1)
    std = np.array(original.STD, np.float32).astype(np.float64).reshape(1, 3, 1, 1)
    centred = (raw.numpy().astype(np.float32) - mean.astype(np.float32)).astype(np.float64)
    return torch.from_numpy((centred * (1 / std)).astype(np.float32))


def assert_passes_identical(
    rgb: np.ndarray, base_scale: tuple[int, int], size_divisor: int | None, ratios, flip: bool
) -> int:
    protocol = InferenceProtocol(
        scales=ratios, flip=flip, base_scale=base_scale, size_divisor=size_divisor
    )
    expected = original.pass_inputs(
        np.ascontiguousarray(rgb[..., ::-1]), ratios, flip, size_divisor, base_scale
    )
    index = 0
    for ratio in ratios:
        for flipped in (False, True) if flip else (False,):
            ref_flipped, ref = expected[index]
            assert ref_flipped == flipped
            ours = pass_input(rgb, protocol, ratio, flipped)
            assert ours.dtype == ref.dtype == torch.float32
            assert ours.shape == ref.shape, (rgb.shape, ratio, flipped)
            if ref.shape[3] == 1 and not original.subtract_is_in_place(ref.shape[2], 1):
                # The original's defect on this OpenCV (M1c): vanseg normalises, to one ulp.
                torch.testing.assert_close(ours, normalised_by_hand(ref), rtol=0, atol=ULP_AT_4)
                index += 1
                continue
            diff = (ours - ref).abs().max().item()
            assert diff == 0, f"image {rgb.shape[:2]} ratio {ratio} flip {flipped}: max {diff}"
            index += 1
    assert index == len(expected)
    return index


@pytest.mark.parametrize("size_divisor", [32, None])
@pytest.mark.parametrize("size", NAMED_SIZES + random_sizes(12))
def test_every_pass_input_is_identical_small_scale(size, size_divisor) -> None:
    """All 12 ms_flip passes at (256, 64) bounds, with and without ResizeToMultiple."""
    rgb = rgb_image(*size, seed=size[0] * 1000 + size[1])
    assert assert_passes_identical(rgb, (256, 64), size_divisor, MS_RATIOS, True) == 12


@pytest.mark.parametrize("size", [(512, 683), (50, 400), (1, 7), (480, 640), (97, 131)])
def test_every_pass_input_is_identical_ade_scale(size) -> None:
    """The real (2048, 512) bounds; 480x640 lands on a multiple of 32 at ratio 1, 512x683 not."""
    rgb = rgb_image(*size, seed=1)
    assert assert_passes_identical(rgb, (2048, 512), 32, (1.0,), True) == 2
    assert assert_passes_identical(rgb, (2048, 512), None, (0.5, 1.75), False) == 2


def test_two_resizes_differ_from_one() -> None:
    """The bug of issue 8: one resize from the original to the final size is not the original."""
    rgb = rgb_image(512, 683, seed=2)
    protocol = InferenceProtocol(base_scale=(1024, 256), size_divisor=32)
    ours = pass_input(rgb, protocol)
    ((_, ref),) = original.pass_inputs(rgb[..., ::-1].copy(), (1.0,), False, 32, (1024, 256))
    assert torch.equal(ours, ref)
    once = cv2.resize(rgb, (ref.shape[3], ref.shape[2]), interpolation=cv2.INTER_LINEAR)
    one_resize = pass_input(once, InferenceProtocol(base_scale=None))
    assert one_resize.shape == ref.shape and not torch.equal(one_resize, ref)


def test_normalisation_matches_mmcv() -> None:
    """Bitwise the original's; a plain division agrees to float32 rounding. (Whether the two
    are bitwise equal depends on the OpenCV release: docs/pitfalls.md M1.)"""
    rgb = rgb_image(40, 60, seed=3)
    ours = pass_input(rgb, InferenceProtocol(base_scale=None))
    ((_, ref),) = original.pass_inputs(rgb[..., ::-1].copy(), (1.0,), False, None, (60, 40))
    assert torch.equal(ours, ref)
    mean = torch.tensor(original.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(original.STD).view(1, 3, 1, 1)
    plain = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() - mean) / std
    torch.testing.assert_close(plain, ref)


def test_one_pixel_wide_images_are_normalised() -> None:
    """A 469x2 image at ratio 0.5 becomes one pixel wide; vanseg normalises it on every OpenCV
    (the original does not on 5.1, docs/pitfalls.md M1c)."""
    rgb = rgb_image(469, 2, seed=4)
    ours = pass_input(rgb, InferenceProtocol(base_scale=None), ratio=0.5)
    assert ours.shape == (1, 3, 235, 1)
    raw = torch.from_numpy(cv2.resize(rgb, (1, 235), interpolation=cv2.INTER_LINEAR))
    expected = normalised_by_hand(raw.float().reshape(235, 1, 3).permute(2, 0, 1)[None])
    torch.testing.assert_close(ours, expected, rtol=0, atol=ULP_AT_4)
