"""Every image kind is read as cv2.imread(IMREAD_COLOR) reads it, as the original does."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vanseg.data.ade20k import image_to_rgb, load_image
from vanseg.data.image_io import image_kind

RNG = np.random.default_rng(0)


def _palette_image() -> Image.Image:
    image = Image.fromarray(RNG.integers(0, 4, (5, 7), dtype=np.uint8), "P")
    image.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 100, 0])
    return image


def _write(kind: str, folder: Path) -> Path:
    """Write one small image of ``kind``; cv2 writes 16-bit data (PIL cannot write 16-bit RGB)."""
    if kind == "gray16":
        path = folder / "gray16.png"
        cv2.imwrite(str(path), RNG.integers(0, 65536, (5, 7), dtype=np.uint16))
    elif kind == "rgb16":
        path = folder / "rgb16.png"
        cv2.imwrite(str(path), RNG.integers(0, 65536, (5, 7, 3), dtype=np.uint16))
    elif kind == "rgba16":
        path = folder / "rgba16.png"
        cv2.imwrite(str(path), RNG.integers(0, 65536, (5, 7, 4), dtype=np.uint16))
    elif kind == "palette":
        path = folder / "palette.png"
        _palette_image().save(path)
    elif kind == "palette_transparency":
        path = folder / "palette_t.png"
        _palette_image().save(path, transparency=1)
    elif kind == "cmyk_jpeg":
        path = folder / "cmyk.jpg"
        rgb = Image.fromarray(RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8))
        rgb.convert("CMYK").save(path)
    else:
        mode, suffix = {
            "gray": ("L", ".png"),
            "gray_jpeg": ("L", ".jpg"),
            "gray_alpha": ("LA", ".png"),
            "rgba": ("RGBA", ".png"),
            "bilevel": ("1", ".png"),
        }[kind]
        channels = {"L": (), "LA": (2,), "RGBA": (4,), "1": ()}[mode]
        data = RNG.integers(0, 256, (5, 7, *channels), dtype=np.uint8)
        image = Image.fromarray(data > 127) if mode == "1" else Image.fromarray(data, mode)
        path = folder / f"{kind}{suffix}"
        image.save(path)
    return path


KINDS = [
    "gray16",
    "rgb16",
    "rgba16",
    "gray",
    "gray_jpeg",
    "gray_alpha",
    "rgba",
    "palette",
    "palette_transparency",
    "bilevel",
    "cmyk_jpeg",
]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_reads_like_cv2_imread_color(kind: str, tmp_path: Path) -> None:
    path = _write(kind, tmp_path)
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[..., ::-1]
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (5, 7, 3)
    np.testing.assert_array_equal(image, expected)


def test_sixteen_bit_keeps_the_high_byte_instead_of_clipping(tmp_path: Path) -> None:
    values = np.array([[0, 257, 0x1234, 61937, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), values)
    image = load_image(tmp_path / "g.png")
    # 0x1234 -> 0x12; 61937 = 0xF1F1 -> 0xF1: scaled by 1/256, never clipped to white.
    np.testing.assert_array_equal(image[..., 0], [[0, 1, 0x12, 0xF1, 0xFF]])
    assert (image[..., 0] == image[..., 2]).all()


@pytest.mark.parametrize(
    ("kind", "words"),
    [("gray16", "16-bit"), ("rgba", "alpha dropped"), ("palette", "palette"), ("gray", "gray")],
)
def test_unusual_kinds_are_named(kind: str, words: str, tmp_path: Path) -> None:
    with Image.open(_write(kind, tmp_path)) as image:
        assert words in image_kind(image)


def test_plain_rgb_is_not_unusual(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.jpg")
    with Image.open(tmp_path / "rgb.jpg") as image:
        assert image_kind(image) is None


@pytest.mark.parametrize("kind", KINDS)
def test_in_memory_pil_image_reads_like_its_file(kind: str, tmp_path: Path) -> None:
    """`Segmenter` accepts PIL images: opened from a file they give the file's pixels."""
    path = _write(kind, tmp_path)
    expected = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[..., ::-1]
    with Image.open(path) as img:
        img.load()
        got = image_to_rgb(img)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
