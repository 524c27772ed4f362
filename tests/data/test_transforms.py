"""Transforms: the original pipeline's arithmetic, image/label alignment, padding, crop rule."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest

from tests.data.data_helpers import encoded_pair, label_color
from vanseg.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalTransform,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomRescale,
    TrainTransform,
    choose_crop_box,
    crop_box_ok,
    photometric_distortion,
    rescale_size,
    resize_to_multiple_size,
)


# --- keep-ratio rescale (mmcv rescale_size) -------------------------------------------------
@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((683, 512), (2048, 512), (683, 512)),  # short side already 512
        ((1000, 400), (2048, 512), (1280, 512)),  # factor 512/400 = 1.28
        ((3000, 500), (2048, 512), (2048, 341)),  # long side bound: 500 * 2048/3000 = 341.3
        ((683, 512), (1024, 256), (342, 256)),  # ratio 0.5: 683 * 0.5 + 0.5 = 342.0
        ((500, 375), (2048, 512), (683, 512)),  # 500 * 512/375 = 682.67 -> 683
        ((512, 683), (2048, 512), (512, 683)),  # portrait
    ],
)
def test_rescale_size_hand_values(size, scale, expected):
    assert rescale_size(*size, scale) == expected


def test_resize_to_multiple_size():
    assert resize_to_multiple_size(683, 512, 32) == (704, 512)
    assert resize_to_multiple_size(2048, 341, 32) == (2048, 352)
    assert resize_to_multiple_size(64, 64, 32) == (64, 64)


def test_random_rescale_factor_stays_in_ratio_range():
    # A 683x512 image: the short side bounds the factor, so new height = 512 * r, r in [0.5, 2].
    rescale = A.Compose([RandomRescale((2048, 512), (0.5, 2.0))], seed=0)
    image = np.zeros((512, 683, 3), np.uint8)
    mask = np.zeros((512, 683), np.uint8)
    ratios = []
    for _ in range(200):
        out = rescale(image=image, mask=mask)
        h, w = out["mask"].shape
        assert out["image"].shape[:2] == (h, w)
        assert 256 <= h <= 1024 and 341 <= w <= 1366
        assert abs(w / h - 683 / 512) < 0.01  # ratio kept
        ratios.append(h / 512)
    assert min(ratios) < 0.6 and max(ratios) > 1.9  # the whole range is used


def test_random_rescale_uses_nearest_for_mask():
    image, mask = encoded_pair(300, 400, num_classes=7)
    rescale = A.Compose([RandomRescale((2048, 512), (0.5, 2.0))], seed=3)
    for _ in range(5):
        out = rescale(image=image, mask=mask)
        assert set(np.unique(out["mask"])) <= set(np.unique(mask))  # no invented labels


# --- random crop with cat_max_ratio ---------------------------------------------------------
class ScriptedRng:
    """Stands in for np.random.Generator: returns scripted offsets and counts the draws."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def integers(self, low, high):
        self.calls += 1
        value = self.values.pop(0)
        assert low <= value < high
        return value


def test_crop_box_ok_rule():
    two = np.array([[0, 0, 1, 1]], np.uint8)
    assert crop_box_ok(two, 0.75, 255)  # 50% each
    assert not crop_box_ok(np.array([[0, 0, 0, 1]], np.uint8), 0.75, 255)  # 75% is not < 75%
    assert not crop_box_ok(np.zeros((4, 4), np.uint8), 0.75, 255)  # one class
    # ignored pixels do not count: 2 vs 1 non-ignored -> 66%
    assert crop_box_ok(np.array([[0, 0, 1, 255, 255, 255]], np.uint8), 0.75, 255)
    assert not crop_box_ok(np.array([[0, 255, 255, 255]], np.uint8), 0.75, 255)


def test_crop_checks_ten_boxes_then_takes_the_eleventh_unchecked():
    mask = np.zeros((100, 100), np.uint8)  # a single class: every box is rejected
    offsets = [(i, 2 * i) for i in range(11)]
    rng = ScriptedRng([v for pair in offsets for v in pair])
    box = choose_crop_box(mask, (50, 50), 0.75, 255, rng)
    assert rng.calls == 22  # 11 boxes, y and x each
    assert box == (10, 60, 20, 70)  # the 11th box


def test_crop_takes_the_first_acceptable_box():
    # Left 75 columns class 0, right 25 columns class 1; a 100x50 crop at x holds
    # max(0, x + 50 - 75) columns of class 1, acceptable (< 75% class 0) when x > 37.
    mask = np.zeros((100, 100), np.uint8)
    mask[:, 75:] = 1
    rng = ScriptedRng([0, 0, 0, 10, 0, 45, 0, 50])
    box = choose_crop_box(mask, (100, 50), 0.75, 255, rng)
    assert box == (0, 100, 45, 95)
    assert rng.calls == 6


def test_crop_without_ratio_check_draws_one_box():
    rng = ScriptedRng([3, 4])
    box = choose_crop_box(np.zeros((60, 60), np.uint8), (50, 50), 1.0, 255, rng)
    assert box == (3, 53, 4, 54) and rng.calls == 2


def test_crop_keeps_short_axes_whole():
    mask = np.zeros((300, 700), np.uint8)
    mask[:, ::2] = 1
    crop = A.Compose([RandomCropCatMax((512, 512), 0.75)], seed=0)
    out = crop(image=np.zeros((300, 700, 3), np.uint8), mask=mask)
    assert out["mask"].shape == (300, 512)


def test_crop_respects_cat_max_ratio_when_possible():
    # Few boxes are acceptable, yet with 10 checks most crops must pass.
    mask = np.zeros((64, 256), np.uint8)
    mask[:, 128:] = 1
    crop = A.Compose([RandomCropCatMax((64, 64), 0.75)], seed=1)
    accepted = 0
    for _ in range(100):
        out = crop(image=np.zeros((64, 256, 3), np.uint8), mask=mask)
        accepted += crop_box_ok(out["mask"], 0.75, 255)
    # 31 of 193 offsets pass: P(10 rejections) = (162/193)^10 ~ 0.17; the 11th may still pass.
    assert accepted >= 60


# --- photometric distortion -----------------------------------------------------------------
def reference_photometric(bgr, brightness, contrast, contrast_first, saturation, hue):
    """The original's arithmetic on a BGR image, written from docs/reference.md §8."""

    def convert(img, alpha=1.0, beta=0.0):
        img = img.astype(np.float32) * alpha + beta
        return np.clip(img, 0, 255).astype(np.uint8)

    img = bgr
    if brightness is not None:
        img = convert(img, beta=brightness)
    if contrast is not None and contrast_first:
        img = convert(img, alpha=contrast)
    if saturation is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=saturation)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + hue) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if contrast is not None and not contrast_first:
        img = convert(img, alpha=contrast)
    return img


@pytest.mark.parametrize("seed", range(6))
def test_photometric_on_rgb_equals_original_on_bgr(seed):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    params = {
        "brightness": float(rng.uniform(-32, 32)),
        "contrast": float(rng.uniform(0.5, 1.5)),
        "contrast_first": bool(seed % 2),
        "saturation": float(rng.uniform(0.5, 1.5)),
        "hue": int(rng.integers(-18, 18)),
    }
    ours = photometric_distortion(rgb.copy(), **params)
    original = reference_photometric(rgb[..., ::-1].copy(), **params)[..., ::-1]
    np.testing.assert_array_equal(ours, original)


def test_photometric_hand_values():
    px = np.array([[[250, 10, 100]]], np.uint8)
    np.testing.assert_array_equal(photometric_distortion(px, brightness=20.0), [[[255, 30, 120]]])
    np.testing.assert_array_equal(photometric_distortion(px, brightness=-32.0), [[[218, 0, 68]]])
    # 101 * 0.5 = 50.5 truncates to 50; 250 * 1.5 clips to 255
    px = np.array([[[101, 250, 0]]], np.uint8)
    np.testing.assert_array_equal(photometric_distortion(px, contrast=0.5), [[[50, 125, 0]]])
    np.testing.assert_array_equal(photometric_distortion(px, contrast=1.5), [[[151, 255, 0]]])
    # Hue is in OpenCV units (180 = 360 degrees): +60 turns pure red into pure green (RGB).
    red = np.array([[[255, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(photometric_distortion(red, hue=60), [[[0, 255, 0]]])
    np.testing.assert_array_equal(photometric_distortion(red, hue=-60), [[[0, 0, 255]]])
    # Saturation 0.5 on pure red: S 255 -> 127, V stays 255 -> (255, 128, 128)
    np.testing.assert_array_equal(photometric_distortion(red, saturation=0.5), [[[255, 128, 128]]])


def test_photometric_parameter_ranges_and_probabilities():
    transform = PhotoMetricDistortion()
    transform.set_random_seed(0)
    draws = [transform.get_params() for _ in range(2000)]
    hues = [d["hue"] for d in draws if d["hue"] is not None]
    assert min(hues) == -18 and max(hues) == 17  # numpy randint: upper bound exclusive
    bright = [d["brightness"] for d in draws if d["brightness"] is not None]
    assert -32 <= min(bright) < -30 and 30 < max(bright) <= 32
    for key in ("brightness", "contrast", "saturation", "hue"):
        rate = np.mean([d[key] is not None for d in draws])
        assert 0.45 < rate < 0.55, key
    assert 0.45 < np.mean([d["contrast_first"] for d in draws]) < 0.55
    contrasts = [d["contrast"] for d in draws if d["contrast"] is not None]
    assert 0.5 <= min(contrasts) and max(contrasts) <= 1.5


# --- the whole training pipeline --------------------------------------------------------------
def denormalise(image):
    return image * np.asarray(IMAGENET_STD, np.float32) + np.asarray(IMAGENET_MEAN, np.float32)


def interior(mask, margin=6):
    """Pixels whose (2 * margin + 1)^2 neighbourhood is inside the crop and has their label.

    Bilinear (image) and nearest (mask) resizing disagree near label borders, and the crop may
    cut next to a border just outside it: both are excluded.
    """
    inside = np.zeros(mask.shape, bool)
    for value in np.unique(mask):
        region = (mask == value).astype(np.uint8)
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        inside |= cv2.erode(region, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    return inside


@pytest.mark.parametrize("seed", range(8))
def test_geometric_steps_keep_image_and_label_aligned(seed):
    # Everything but the photometric step: the colour of every interior pixel must still be
    # exactly the code of its label after rescale, crop, flip, normalise and pad.
    image, mask = encoded_pair(300, 400, num_classes=10, seed=seed)
    pipeline = TrainTransform(seed=seed)
    pipeline.compose.transforms[3].p = 0.0  # PhotoMetricDistortion off
    out_image, out_mask = pipeline(image, mask, seed=seed)
    assert out_image.shape == (512, 512, 3) and out_image.dtype == np.float32
    assert out_mask.shape == (512, 512) and out_mask.dtype == np.uint8
    colours = np.rint(denormalise(out_image)).astype(np.int64)
    check = interior(out_mask) & (out_mask != 255)
    assert check.sum() > 1000
    np.testing.assert_array_equal(colours[check], label_color(out_mask)[check])


#: One grey level after normalisation (the smallest std), plus float32 rounding.
GREY = 1.0 / min(IMAGENET_STD) + 1e-5


@pytest.mark.parametrize("seed", range(8))
def test_full_pipeline_alignment_padding_and_label_range(seed):
    # Photometric distortion maps colours through one global function up to OpenCV's own
    # rounding: its HSV -> RGB conversion rounds the vectorised body and the scalar tail of a
    # row differently (docs/pitfalls.md M1b; the original makes the same calls). So inside the
    # regions each label keeps a single colour to within one grey level, different labels
    # keep their own pixels, and padding is image 0 / label 255.
    image, mask = encoded_pair(200, 300, num_classes=6, block=40, seed=seed)
    out_image, out_mask = TrainTransform()(image, mask, seed=seed)
    assert out_image.shape == (512, 512, 3) and out_mask.shape == (512, 512)
    assert set(np.unique(out_mask)) <= set(range(6)) | {255}
    inside = interior(out_mask)
    for value in np.unique(out_mask[inside]):
        if value == 255:
            continue
        pixels = out_image[inside & (out_mask == value)]
        np.testing.assert_allclose(pixels, np.broadcast_to(pixels[0], pixels.shape), atol=GREY)


def test_small_image_is_padded_bottom_right_with_zero_and_ignore():
    # 100x80 image, scale bound (160, 40) and ratio 1: rescale to 50x40, crop 64x64 keeps all,
    # pad 24 rows at the bottom and 14 columns at the right.
    image = np.full((80, 100, 3), 200, np.uint8)
    mask = np.ones((80, 100), np.uint8)
    transform = TrainTransform(
        scale=(160, 40), ratio_range=(1.0, 1.0), crop_size=(64, 64), flip_prob=0.0,
        brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0,
    )  # fmt: skip
    out_image, out_mask = transform(image, mask, seed=0)
    assert out_mask.shape == (64, 64)
    assert (out_mask[:40, :50] == 1).all()
    assert (out_mask[40:, :] == 255).all() and (out_mask[:, 50:] == 255).all()
    assert (out_image[40:, :] == 0).all() and (out_image[:, 50:] == 0).all()
    expected = (np.array([200.0] * 3) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(out_image[:40, :50], np.broadcast_to(expected, (40, 50, 3)), 1e-5)


def test_seeded_calls_are_reproducible_and_seeds_differ():
    image, mask = encoded_pair(300, 400, num_classes=10)
    transform = TrainTransform()
    a = transform(image, mask, seed=123)
    b = TrainTransform()(image, mask, seed=123)
    transform(image, mask, seed=7)  # state from other calls must not leak into seeded ones
    c = transform(image, mask, seed=123)
    for x, y in ((a, b), (a, c)):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    d = transform(image, mask, seed=124)
    assert not np.array_equal(a[0], d[0])


# --- evaluation ------------------------------------------------------------------------------
def test_eval_transform_resizes_image_and_keeps_label():
    image, mask = encoded_pair(375, 500, num_classes=5)
    out_image, out_mask = EvalTransform((2048, 512), size_divisor=None)(image, mask)
    assert out_image.shape == (512, 683, 3) and out_image.dtype == np.float32
    assert out_mask is mask  # never resized
    out_image, _ = EvalTransform((2048, 512), size_divisor=32)(image, mask)
    assert out_image.shape == (512, 704, 3)


def test_eval_normalisation_values():
    image = np.zeros((512, 600, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 124, 116, 104
    out, _ = EvalTransform()(image, np.zeros((512, 600), np.uint8))
    expected = (np.array([124.0, 116.0, 104.0]) - [123.675, 116.28, 103.53]) / [
        58.395, 57.12, 57.375,
    ]  # fmt: skip
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(900, 2), (2, 900), (5000, 2), (2, 5000)])
def test_thin_images_go_through_the_training_pipeline(height, width):
    # At the smallest ratio 0.5 the long side is rescaled to 1024. 2 px across 900 px become
    # int(2 * 1024 / 900 + 0.5) = 2 px; across 5000 px int(2 * 1024 / 5000 + 0.5) = 0 px, where
    # mmcv's arithmetic asks cv2.resize for an empty image. The side is kept at 1 px instead.
    image = np.full((height, width, 3), 200, np.uint8)
    mask = np.ones((height, width), np.uint8)
    transform = TrainTransform(
        ratio_range=(0.5, 0.5), flip_prob=0.0,
        brightness_delta=0, contrast_range=(1, 1), saturation_range=(1, 1), hue_delta=0,
    )  # fmt: skip
    out_image, out_mask = transform(image, mask, seed=0)
    assert out_image.shape == (512, 512, 3) and out_mask.shape == (512, 512)
    thin = 2 if max(height, width) == 900 else 1
    strip = (slice(None), slice(0, thin)) if height > width else (slice(0, thin), slice(None))
    labelled = np.zeros((512, 512), bool)
    labelled[strip] = True
    assert (out_mask[labelled] == 1).all() and (out_mask[~labelled] == 255).all()
    expected = (np.array([200.0] * 3) - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(
        out_image[labelled], np.broadcast_to(expected, (512 * thin, 3)), 1e-5
    )
    assert (out_image[~labelled] == 0).all()
