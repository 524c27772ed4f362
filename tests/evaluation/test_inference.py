"""Whole / slide / multi-scale + flip inference (docs/reference.md §8, docs/pitfalls.md C)."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import vanseg
from vanseg.inference import passes as inference
from vanseg.inference.passes import (
    predict_mask,
    predict_probs,
    predict_probs_tensor,
    resize_rows,
    set_eval_seed,
    slide_logits,
)
from vanseg.inference.preprocess import keep_ratio_size, multiple_size, prepare_image
from vanseg.inference.protocol import MS_RATIOS, InferenceProtocol, resolve_protocol

K = 4


class Recorder(nn.Module):
    """Pointwise (1x1 conv) model that records the input sizes it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, K, 1)
        self.sizes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[2:]))
        return self.conv(x)


class RowBias(nn.Module):
    """Not flip-equivariant: the logits depend on the column index."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = torch.linspace(-3, 3, x.shape[-1]).expand(x.shape[0], 1, x.shape[2], -1)
        return torch.cat([cols, -cols, x[:, :1]], dim=1)


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_keep_ratio_and_multiple_sizes() -> None:
    # ADE20K's typical 512x683 (h, w) image: already at scale; ratio 0.5 bounds (1024, 256).
    assert keep_ratio_size(512, 683, (2048, 512)) == (512, 683)
    assert keep_ratio_size(512, 683, (1024, 256)) == (256, 342)  # int(341.5 + 0.5)
    assert keep_ratio_size(300, 3000, (2048, 512)) == (205, 2048)  # long side bound wins
    assert keep_ratio_size(65, 47, (2048, 512)) == (708, 512)
    assert multiple_size(512, 683, 32) == (512, 704)
    assert multiple_size(65, 47, 32) == (96, 64)


def test_keep_ratio_size_follows_the_mmcv_formula() -> None:
    """docs/reference.md §8: f = min(long / max(h, w), short / min(h, w)), int(side * f + 0.5)."""
    rng = np.random.default_rng(0)
    for height, width in rng.integers(20, 3000, size=(200, 2)).tolist():
        for long, short in ((2048, 512), (1024, 256), (3584, 896)):
            f = min(long / max(height, width), short / min(height, width))
            expected = (int(height * f + 0.5), int(width * f + 0.5))
            assert keep_ratio_size(height, width, (long, short)) == expected


def test_resize_to_multiple_is_a_resize() -> None:
    protocol = InferenceProtocol(base_scale=None, size_divisor=32)
    x = prepare_image(image(65, 47), protocol)
    assert x.shape == (1, 3, 96, 64)
    # A resize stretches the content; a pad would leave the bottom rows at the pad value.
    assert x[0, :, -1].std() > 0.1


def test_slide_equals_whole_for_pointwise_model() -> None:
    model = Recorder().eval()
    x = torch.randn(2, 3, 100, 77)
    whole = model(x)
    slide = slide_logits(model, x, crop=32, stride=21)
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-6)


def test_slide_windows_follow_mmseg() -> None:
    model = Recorder().eval()
    slide_logits(model, torch.randn(1, 3, 100, 77), crop=32, stride=21)
    # h_grids = (100 - 32 + 20) // 21 + 1 = 5, w_grids = (77 - 32 + 20) // 21 + 1 = 4
    assert len(model.sizes) == 20 and set(model.sizes) == {(32, 32)}
    model.sizes.clear()
    slide_logits(model, torch.randn(1, 3, 20, 50), crop=32, stride=21)
    # An axis shorter than the crop is one window of its own length.
    assert model.sizes == [(20, 32), (20, 32)]


@pytest.mark.parametrize("mode", ["whole", "slide"])
@pytest.mark.parametrize("size", [(65, 47), (150, 97)])
def test_output_at_original_size_and_normalised(mode: str, size: tuple[int, int]) -> None:
    protocol = InferenceProtocol(mode=mode, base_scale=None, crop=64, stride=48, flip=True)
    probs = predict_probs(Recorder().eval(), image(*size), protocol)
    assert probs.shape == (1, K, *size)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(1, *size))
    assert predict_mask(Recorder().eval(), image(*size), protocol).shape == size


def test_multi_scale_resizes_the_original_image() -> None:
    model = Recorder().eval()
    protocol = InferenceProtocol.ms_flip(size_divisor=32)
    probs = predict_probs(model, image(512, 683), protocol)
    assert probs.shape == (1, K, 512, 683)
    expected = []
    for r in MS_RATIOS:
        h, w = keep_ratio_size(512, 683, (int(2048 * r), int(512 * r)))
        expected += [multiple_size(h, w, 32)] * 2  # plain and flipped pass
    assert model.sizes == expected
    assert protocol.passes == 12
    assert "ratios 0.5, 0.75, 1, 1.25, 1.5, 1.75 | + flip" in protocol.describe()


def test_flip_tta_unflips() -> None:
    img = image(40, 56)
    for model in (Recorder().eval(), RowBias()):
        plain = predict_probs(model, img, InferenceProtocol(base_scale=None))
        flipped = predict_probs(model, img, InferenceProtocol(base_scale=None, flip=True))
        if isinstance(model, Recorder):  # flip-equivariant: flip TTA changes nothing
            torch.testing.assert_close(flipped, plain)
        else:  # column-dependent logits: the flipped pass mirrors them, averaging cancels
            torch.testing.assert_close(flipped[:, 0], flipped[:, 1])
            assert not torch.allclose(plain[:, 0], plain[:, 1])


def test_repeated_scale_equals_single_scale() -> None:
    img = image(50, 70)
    single = predict_probs(Recorder().eval(), img, InferenceProtocol())
    double = predict_probs(Recorder().eval(), img, InferenceProtocol(scales=(1.0, 1.0)))
    torch.testing.assert_close(double, single)


def test_prepared_tensor_variant() -> None:
    img = image(60, 90)
    protocol = InferenceProtocol(size_divisor=32, flip=True)
    x = prepare_image(img, protocol)
    model = Recorder().eval()
    torch.testing.assert_close(
        predict_probs_tensor(model, x, (60, 90), protocol), predict_probs(model, img, protocol)
    )
    with pytest.raises(ValueError, match="original uint8 image"):
        predict_probs_tensor(model, x, (60, 90), InferenceProtocol.ms_flip())
    with pytest.raises(ValueError, match="RGB uint8"):
        predict_probs(model, x, protocol)


def test_protocol_validation_and_resolution() -> None:
    with pytest.raises(ValueError, match="stride <= crop"):
        InferenceProtocol(mode="slide", crop=64, stride=65)
    with pytest.raises(ValueError, match="mode"):
        InferenceProtocol(mode="tiles")  # type: ignore[arg-type]
    protocol = resolve_protocol({"mode": "slide", "scales": [1.0], "base_scale": [2048, 512]})
    assert protocol.base_scale == (2048, 512) and protocol.mode == "slide"
    ms = resolve_protocol({"size_divisor": 32}, tta="ms_flip")
    assert ms.scales == MS_RATIOS and ms.flip and ms.size_divisor == 32
    assert ms.to_dict()["scales"] == list(MS_RATIOS)
    with pytest.raises(ValueError, match="unknown tta"):
        resolve_protocol({}, tta="flip_only")


def test_ham_model_is_deterministic_with_eval_seed() -> None:
    model = vanseg.build_model("van_test", "light_ham", K, overrides=["head.channels=32"]).eval()
    assert set_eval_seed(model, 0) == 1
    protocol = InferenceProtocol(base_scale=(96, 64), mode="slide", crop=64, stride=48)
    img = image(70, 90)
    first = predict_probs(model, img, protocol)
    torch.testing.assert_close(predict_probs(model, img, protocol), first, rtol=0, atol=0)
    assert first.shape == (1, K, 70, 90)


# ---------------------------------------------------------------- banded masks (issue 11)
BANDED = [
    InferenceProtocol(base_scale=None, scales=(0.5, 1.0, 1.5), flip=True),
    InferenceProtocol(base_scale=(96, 64), size_divisor=32, flip=True),
    InferenceProtocol(base_scale=None, mode="slide", crop=32, stride=21, scales=(0.75, 1.25)),
]


@pytest.mark.parametrize(
    ("size", "out_size"), [((7, 5), (61, 3)), ((40, 30), (1, 97)), ((23, 64), (23, 64))]
)
def test_resize_rows_is_the_bilinear_resize(size, out_size) -> None:
    """Any band of rows: those rows of F.interpolate (up to float rounding)."""
    x = torch.randn(2, K, *size, generator=torch.Generator().manual_seed(0)) * 10
    full = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
    for step in (1, 4, out_size[0]):
        for start in range(0, out_size[0], step):
            stop = min(start + step, out_size[0])
            band = resize_rows(x, out_size, start, stop)
            assert band.shape == (2, K, stop - start, out_size[1])
            torch.testing.assert_close(band, full[:, :, start:stop], rtol=0, atol=1e-5)


@pytest.mark.parametrize("protocol", BANDED, ids=["ms_flip", "keep_ratio_flip", "slide_ms"])
@pytest.mark.parametrize("size", [(37, 53), (96, 41), (150, 97)])
def test_banded_mask_is_the_argmax_of_the_probabilities(
    protocol: InferenceProtocol, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, img = Recorder().eval(), image(*size, seed=size[0])
    probs = predict_probs(model, img, protocol)[0]
    reference = probs.argmax(dim=0)
    # Under the budget, the mask is that very computation, bit for bit.
    assert torch.equal(predict_mask(model, img, protocol), reference)

    rows = 3  # a band of at most 3 output rows: many bands
    monkeypatch.setattr(inference, "MASK_BAND_BYTES", rows * K * size[1] * 4)
    bands: list[tuple[int, int]] = []

    def spy(logits: torch.Tensor, out_size, start: int, stop: int) -> torch.Tensor:
        bands.append((start, stop))
        return resize_rows(logits, out_size, start, stop)

    monkeypatch.setattr(inference, "resize_rows", spy)
    banded = predict_mask(model, img, protocol)
    starts = range(0, size[0], rows)
    expected_bands = [(s, min(s + rows, size[0])) for s in starts for _ in range(protocol.passes)]
    assert bands == expected_bands
    # Banded values differ from the full resize by float rounding only, so the classes agree
    # wherever the best two averaged probabilities are further apart than that.
    best, second = probs.topk(2, dim=0).values
    clear = best - second > 1e-5
    assert clear.float().mean() > 0.99
    assert banded.shape == size and banded.dtype == torch.int64
    assert torch.equal(banded[clear], reference[clear])


class LiveTensors(TorchDispatchMode):
    """Peak bytes of the tensors that ops made under this mode and that are still alive.

    Counts every storage once (views share it); a tensor is alive while any reference to it is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.alive: list[weakref.ref] = []
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        refs = [weakref.ref(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        self.alive = [r for r in [*self.alive, *refs] if r() is not None]
        storages = {}
        for ref in self.alive:
            tensor = ref()
            if tensor is not None:
                storage = tensor.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
        self.peak = max(self.peak, sum(storages.values()))
        return out


def test_live_tensor_count_by_hand() -> None:
    with LiveTensors() as live:
        a = torch.zeros(1000)  # 4000 bytes
        b = a.view(10, 100)  # a view: no new storage
        c = torch.ones(500, dtype=torch.float64)  # 4000 bytes
        del a, b, c
        d = torch.zeros(10)  # 40 bytes, the others are gone
    assert live.peak == 8000 and d.numel() == 10


def test_banded_mask_memory_does_not_grow_with_classes_times_pixels(monkeypatch) -> None:
    """K x H x W float32 probabilities are never built: the peak stays far below them."""
    classes, height, width = 64, 600, 500
    full_bytes = classes * height * width * 4  # 76.8 MB
    band_bytes = 2**20  # 8 output rows of 64 x 500 float32 per band
    torch.manual_seed(0)
    model = nn.Conv2d(3, classes, 1).eval()
    protocol = InferenceProtocol(base_scale=(64, 48), scales=(1.0, 1.5), flip=True)
    img = image(height, width)
    monkeypatch.setattr(inference, "MASK_BAND_BYTES", band_bytes)
    with LiveTensors() as banded:
        mask = predict_mask(model, img, protocol)
    with LiveTensors() as whole:  # the full computation, as a check of the measurement
        probs = predict_probs(model, img, protocol)
    # Kept logits of the 4 passes: ratio 1 fits 600x500 into (64, 48): f = 0.096, 58x48;
    # ratio 1.5 into (96, 72): f = 0.144, 86x72. Then the int64 mask and a few bands.
    logits_bytes = 2 * classes * 4 * (58 * 48 + 86 * 72)  # 4.6 MB
    assert banded.peak <= logits_bytes + height * width * 8 + 4 * band_bytes
    assert banded.peak < full_bytes / 7
    assert whole.peak >= 2 * full_bytes  # the probabilities of a pass and their running sum
    best, second = probs[0].topk(2, dim=0).values
    clear = best - second > 1e-5
    assert torch.equal(mask[clear], probs[0].argmax(dim=0)[clear])


def test_a_one_pixel_side_stays_one_pixel() -> None:
    """1 x 5000 into (2048, 512): f = min(2048 / 5000, 512 / 1) = 0.4096, so the short side is
    int(0.4096 + 0.5) = 0 by the formula; it is kept at 1 row (the original fails there)."""
    protocol = InferenceProtocol(size_divisor=32)
    for size, network in (((1, 5000), (32, 2048)), ((5000, 1), (2048, 32))):
        model = Recorder().eval()
        assert predict_mask(model, image(*size), protocol).shape == size
        assert model.sizes == [network]  # (1, 2048) resized to a multiple of 32
    model = Recorder().eval()
    predict_mask(model, image(1, 5000), InferenceProtocol())
    assert model.sizes == [(1, 2048)]


def test_an_empty_image_is_named() -> None:
    with pytest.raises(ValueError, match=r"image is empty, shape \(0, 0, 3\)"):
        predict_mask(Recorder().eval(), np.zeros((0, 0, 3), np.uint8), InferenceProtocol())
