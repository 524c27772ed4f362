"""One-line inference: ``Segmenter`` turns images into class masks with the checkpoint's protocol.

    seg = vanseg.Segmenter.from_checkpoint("model.ckpt")   # or .from_pretrained(folder_id_or_name)
    res = seg("photo.jpg")                                 # path, PIL image, uint8 array, list
    res.mask, res.overlay(), res.save("out/")

A checkpoint (or exported folder) carries a `ModelMeta`: class names, palette, normalisation
and the default test protocol of the model's family (keep-ratio scale, ResizeToMultiple
divisor, ratios). The segmenter runs exactly that protocol, assembled by the same
`vanseg.inference.assemble.assemble` as ``eval.py`` and ``predict.py`` (which runs the same
passes in its pipeline), so its masks are theirs. Paths are read by the data pipeline's reader
(`vanseg.data.ade20k.load_image`: PIL, RGB, no EXIF rotation); PIL images are converted the same
way; arrays must be RGB ``uint8`` ``(H, W, 3)``.

``tta="ms_flip"`` selects the published multi-scale + flip protocol; ``precision`` (``fp32``,
``bf16``, ``fp16``) and ``fast`` select `vanseg.accel.optimize.for_inference` (autocast / folded
model). The Ham heads draw random NMF bases at every forward, as the original does; pass
``eval_seed`` for repeatable masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from vanseg.checkpoint.file import LoadedCheckpoint, load_checkpoint
from vanseg.checkpoint.metadata import ModelMeta
from vanseg.errors import ConfigError
from vanseg.inference.assemble import assemble
from vanseg.inference.batched import run_passes, usable_batch_size
from vanseg.inference.images import ImageInput, read_image
from vanseg.inference.passes import mask_of_passes, predict_mask, predict_probs, probs_of_passes
from vanseg.inference.preprocess import pass_inputs
from vanseg.inference.protocol import InferenceProtocol
from vanseg.inference.visualize import add_legend, blend, palette_array, present_classes
from vanseg.inference.visualize import save_label as _save_label
from vanseg.utils.atomic import refuse_existing, write_atomic

__all__ = ["ImageInput", "SegmentationResult", "Segmenter", "ConfigError", "read_image"]


@dataclass(frozen=True)
class SegmentationResult:
    """The prediction for one image.

    Attributes:
        image: The RGB uint8 input ``(H, W, 3)``.
        mask: Class ids ``(H, W)`` (int64) at the image's own size.
        probs: Class probabilities ``(K, H, W)`` (float32) if asked for, else ``None``.
        class_names: One name per class.
        palette: ``(K, 3)`` uint8 colours.
        source: The file the image came from, if any.
    """

    image: np.ndarray
    mask: np.ndarray
    probs: np.ndarray | None
    class_names: tuple[str, ...]
    palette: np.ndarray
    source: Path | None = None

    @property
    def classes_present(self) -> list[str]:
        """Names of the predicted classes, most pixels first."""
        return [self.class_names[c] for c in present_classes(self.mask, len(self.class_names))]

    def colored(self) -> Image.Image:
        """The mask in class colours."""
        return Image.fromarray(self.palette[self.mask])

    def overlay(self, opacity: float = 0.5, legend: bool = True) -> Image.Image:
        """Image and class colours blended (mmseg ``show_result``), with a legend on the right.

        Args:
            opacity: Weight of the class colours (0: image only, 1: colours only).
            legend: Add a panel naming the classes present (the picture stays at the top left).
        """
        picture = blend(self.image, self.mask, self.palette, opacity)
        if legend:
            picture = add_legend(picture, self.mask, self.class_names, self.palette)
        return Image.fromarray(picture)

    def save(
        self,
        folder: str | Path,
        name: str | None = None,
        overwrite: bool = False,
        opacity: float = 0.5,
        legend: bool = True,
    ) -> tuple[Path, Path]:
        """Write ``labels/<name>.png`` (palette PNG of class ids) and ``overlays/<name>.jpg``.

        Args:
            folder: Output folder (created if needed).
            name: File stem; defaults to the source file's stem (required for arrays and PIL
                images without a file).
            overwrite: Replace existing files instead of refusing.
            opacity, legend: See :meth:`overlay`.

        Returns:
            ``(label path, overlay path)``; each file is written atomically.

        Raises:
            ConfigError: No name, or existing files without ``overwrite``.
        """
        if name is None:
            if self.source is None:
                raise ConfigError("this image has no file name: pass save(folder, name=...)")
            name = self.source.stem
        folder = Path(folder)
        label = folder / "labels" / f"{name}.png"
        overlay = folder / "overlays" / f"{name}.jpg"
        refuse_existing([label, overlay], overwrite, "overwrite=True", "another folder or name")
        self.write(label, overlay, opacity, legend)
        return label, overlay

    def write(
        self,
        label: Path | None = None,
        overlay: Path | None = None,
        opacity: float = 0.5,
        legend: bool = True,
    ) -> None:
        """Write the label PNG and/or the overlay JPEG (quality 95) to these paths, atomically.

        Existing files are replaced: callers check them first (:meth:`save`, ``predict.py``).
        """
        if label is not None:
            _save_label(self.mask, self.palette, label)
        if overlay is not None:
            picture = self.overlay(opacity, legend)
            write_atomic(overlay, lambda tmp: picture.save(tmp, format="JPEG", quality=95))


class Segmenter:
    """A model, its metadata and its inference protocol, callable on images.

    Args:
        model: A vanseg segmentor (moved to ``device``, eval mode).
        meta: Its metadata (class names, palette, normalisation, default test protocol).
        inference: ``inference`` options as in ``conf/predict.yaml`` (``mode``, ``crop``, ...);
            missing keys and ``"checkpoint"`` values take the checkpoint's protocol. It may
            hold ``precision`` and ``fast`` instead of the arguments below (not both ways).
        tta: ``None`` or ``"ms_flip"`` (the published multi-scale + flip test).
        protocol: A ready protocol instead of ``inference``/``tta`` (its own normalisation).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast; `vanseg.accel.optimize.for_inference`);
            ``None``: ``inference``'s, else fp32.
        fast: Run the folded, channels-last copy of `vanseg.optimize` (fp32 within 1e-4);
            ``None``: ``inference``'s, else false.
        palette: Colours instead of the checkpoint's: ``"ade20k"``, ``None`` (generated) or
            ``[[r, g, b], ...]``; ``"checkpoint"`` keeps the checkpoint's.
        eval_seed: Ham heads: fix the NMF bases (repeatable masks); ``None`` keeps the
            original's fresh random bases.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:0"``, ...

    Raises:
        ConfigError: ``precision`` or ``fast`` given both as an argument and in ``inference``
            with different values, or an invalid option.
    """

    def __init__(
        self,
        model: nn.Module,
        meta: ModelMeta,
        inference: Mapping[str, Any] | None = None,
        tta: str | None = None,
        protocol: InferenceProtocol | None = None,
        precision: str | None = None,
        fast: bool | None = None,
        palette: str | Sequence[Sequence[int]] | None = "checkpoint",
        eval_seed: int | None = None,
        device: str = "auto",
    ) -> None:
        options = dict(inference or {})
        for key, value in (("precision", precision), ("fast", fast)):
            if value is None:
                continue
            if key in options and options[key] != value:
                raise ConfigError(
                    f"{key} is given twice, as {key}={value!r} and inference.{key}="
                    f"{options[key]!r}; give it once"
                )
            options[key] = value
        self.runner = assemble(model, meta, options, tta, eval_seed, device, protocol)
        if isinstance(palette, str) and palette == "checkpoint":
            self._palette = np.asarray(meta.palette, dtype=np.uint8)
        else:
            self._palette = palette_array(meta.num_classes, palette)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_loaded(cls, loaded: LoadedCheckpoint, **options: Any) -> Segmenter:
        """From a `LoadedCheckpoint` (model + meta); ``options`` as in the constructor."""
        return cls(loaded.model, loaded.meta, **options)

    @classmethod
    def build(
        cls,
        backbone: str = "van_tiny",
        head: str = "light_ham",
        num_classes: int | None = None,
        pretrained: str | None = None,
        overrides: Sequence[str] = (),
        **options: Any,
    ) -> Segmenter:
        """A new model from the ``conf/`` groups (as `vanseg.build_model`), ready to call.

        Its head is untrained (random masks unless you train or load weights). ``num_classes``
        None keeps the data config's (ADE20K: 150, with its names and colours); other counts
        get generated names and colours.
        ``options`` as in the constructor.
        """
        from vanseg.models.build import build_model_from_config, compose_model_config

        model_cfg = compose_model_config(backbone, head, num_classes, pretrained, overrides)
        model = build_model_from_config(model_cfg)
        return cls(model, ModelMeta.from_model_and_data(model_cfg), **options)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, unsafe_load: bool = False, **options: Any
    ) -> Segmenter:
        """From a vanseg checkpoint (``train.py``, ``convert``, ``save_model``).

        Args:
            path: The checkpoint file.
            unsafe_load: Allow files that need full unpickling (trusted files only).
            options: See the constructor (``tta``, ``precision``, ``device``, ...).
        """
        return cls.from_loaded(load_checkpoint(path, unsafe_load), **options)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **options: Any,
    ) -> Segmenter:
        """From an exported folder (``model.safetensors`` + ``config.json``), a Hub id, or a
        published name such as ``"light_ham_van_base_ade20k"`` (downloaded, converted and
        cached once: `vanseg.checkpoint.zoo`).

        A folder or Hub id involves no pickle (see `vanseg.checkpoint.hub`); a published file
        is read with ``weights_only`` loading. ``options`` as in the constructor.
        """
        from vanseg.checkpoint.hub import load_pretrained

        loaded = load_pretrained(
            source,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            token=token,
        )
        return cls.from_loaded(loaded, **options)

    # ------------------------------------------------------------------ properties
    @property
    def classes(self) -> tuple[str, ...]:
        """One name per class id."""
        return self.meta.class_names

    @property
    def palette(self) -> np.ndarray:
        """``(K, 3)`` uint8 colours, one per class id."""
        return self._palette.copy()

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.runner.device

    @property
    def model(self) -> nn.Module:
        """The segmentor (eval mode)."""
        return self.runner.model

    @property
    def meta(self) -> ModelMeta:
        """The checkpoint's metadata."""
        return self.runner.meta

    @property
    def protocol(self) -> InferenceProtocol:
        """The test protocol every image is run with."""
        return self.runner.protocol

    @property
    def precision(self) -> str:
        return self.runner.precision

    @property
    def fast(self) -> bool:
        return self.runner.fast

    @property
    def eval_seed(self) -> int | None:
        return self.runner.eval_seed

    def __repr__(self) -> str:
        return (
            f"Segmenter({self.meta.family}, {self.meta.num_classes} classes, "
            f"precision={self.precision}, fast={self.fast}, device={self.device}, "
            f"protocol: {self.protocol.describe()})"
        )

    # ------------------------------------------------------------------ inference
    def predict(self, rgb: np.ndarray, probs: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``(mask (H, W) int64, probs (K, H, W) float32 or None)`` for an RGB uint8 array.

        The probabilities take ``K x H x W`` float32 values; without them the mask is computed
        in bands of rows on big images (`vanseg.inference.passes.predict_mask`).
        """
        if not probs:
            return predict_mask(self.runner.forward, rgb, self.protocol).cpu().numpy(), None
        p = predict_probs(self.runner.forward, rgb, self.protocol)[0]
        return p.argmax(dim=0).cpu().numpy(), p.cpu().numpy()

    def segment(self, image: ImageInput, probs: bool = False) -> SegmentationResult:
        """Segment one image (see :func:`read_image` for the accepted kinds)."""
        rgb, source = read_image(image)
        mask, p = self.predict(rgb, probs)
        return SegmentationResult(rgb, mask, p, self.classes, self._palette, source)

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        probs: bool = False,
        batch_size: int = 1,
    ) -> SegmentationResult | list[SegmentationResult]:
        """Segment an image, or each image of a list or tuple (then a list of results).

        Args:
            images: A path, PIL image, RGB uint8 array ``(H, W, 3)``, or a list of them.
            probs: Also return the class probabilities (``result.probs``).
            batch_size: For a list: passes of equal input size run ``batch_size`` at a time.
                Heads without NMF give the masks of batch 1 up to float rounding; the Ham heads
                always run at batch 1 (`vanseg.inference.batched`).
        """
        if not isinstance(images, (list, tuple)):
            return self.segment(images, probs)
        batch_size = usable_batch_size(self.model, batch_size)
        if batch_size == 1:
            return [self.segment(image, probs) for image in images]
        results: list[SegmentationResult] = []
        for start in range(0, len(images), batch_size):
            read = [read_image(image) for image in images[start : start + batch_size]]
            prepared = [list(pass_inputs(rgb, self.protocol)) for rgb, _ in read]
            logits = run_passes(
                self.runner.forward, prepared, self.protocol, self.device, batch_size
            )
            for (rgb, source), passes in zip(read, logits, strict=True):
                size = (rgb.shape[0], rgb.shape[1])
                if probs:
                    p = probs_of_passes(passes, self.protocol, size)[0]
                    mask, p_np = p.argmax(dim=0).cpu().numpy(), p.cpu().numpy()
                else:
                    mask, p_np = mask_of_passes(passes, self.protocol, size).cpu().numpy(), None
                results.append(
                    SegmentationResult(rgb, mask, p_np, self.classes, self._palette, source)
                )
        return results
