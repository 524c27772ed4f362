"""LightningDataModules for ADE20K-layout datasets: ADE20K itself, custom folders, generated data.

Batches are dicts ``{"image": float32 (B, 3, H, W), "mask": int64 (B, H, W), "name": list[str]}``
with ``ignore_index`` (255) marking ignored pixels. Training batches are aligned 512x512 crops;
validation/test batches hold the resized image and the mask at its original resolution, one
image per batch by default (sizes differ, docs/pitfalls.md B3).

Samplers are chosen here, so the Trainer must not replace them: build it with
``use_distributed_sampler=False`` (docs/pitfalls.md B1). Training uses `InfiniteSampler` (run by
``max_steps``; the DataLoader has no length); evaluation uses `ShardSampler` (every image exactly
once across ranks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from vanseg.data.ade20k import ADE20KDataset, scan_split
from vanseg.data.classes import (
    ADE20K_NUM_CLASSES,
    IGNORE_INDEX,
    Color,
    resolve_class_names,
    resolve_palette,
)
from vanseg.data.sampler import InfiniteSampler, ShardSampler
from vanseg.data.scan import check_verify_mode, crop_note, problems_message, scan
from vanseg.data.synthetic import (
    SYNTHETIC_NUM_CLASSES,
    SyntheticSpec,
    ensure_synthetic_dataset,
    synthetic_class_names,
)
from vanseg.data.synthetic import synthetic_root as _synthetic_root
from vanseg.data.transforms import (
    ADE20K_SCALE,
    TRAIN_PIPELINE_OPTIONS,
    EvalTransform,
    TrainTransform,
)
from vanseg.errors import DatasetError
from vanseg.utils.distributed import rank_and_world_size

__all__ = ["ADE20KDataModule", "SyntheticDataModule"]

log = logging.getLogger("vanseg")


class ADE20KDataModule(pl.LightningDataModule):
    """ADE20K (or any dataset in its layout) with the original training and test pipelines.

    Args:
        root: Folder holding ``images/`` and ``annotations/``.
        name: Dataset name, for logs.
        num_classes: Number of classes K after label reduction.
        ignore_index: Label of ignored pixels (255).
        reduce_zero_label: Raw 0 is "unlabelled": map it to ignore and k to k-1 (ADE20K).
        class_names: ``"ade20k"``, ``None`` (``class_<i>``) or one name per class.
        palette: ``"ade20k"``, ``None`` (generated) or one ``[r, g, b]`` per class.
        image_suffixes: Image extensions to list.
        label_suffix: Label extension.
        train_split: Folder name of the training split.
        val_split: Folder name of the validation split (also used for testing).
        batch_size_per_gpu: Training images per device and step.
        val_batch_size: Evaluation images per device and step; 1 keeps whole-image inference
            exact (sizes differ).
        num_workers: DataLoader worker processes per device.
        pin_memory: Pin batches in page-locked memory for faster host-to-GPU copies; ``None``
            pins when CUDA is available.
        eval_scale: ``(long, short)`` bounds of the evaluation keep-ratio resize.
        val_size_divisor: Resize validation images to a multiple of this (``None``: no).
        test_size_divisor: Same for the test pipeline (32 in the original ade20k.py test
            pipeline; ``None`` for HamNet's ade20k_std.py).
        seed: Seed of the training sample order and augmentation.
        rank: Override the rank used by the samplers (default: ``torch.distributed``).
        world_size: Override the world size used by the samplers.
        verify: Up-front scan in `prepare_data`: ``headers`` (default), ``full`` (decode every
            file) or ``off`` (pairing only); see `vanseg.data.scan`.
        **train_pipeline: Options of `TrainTransform` (``scale``, ``ratio_range``,
            ``crop_size``, ``cat_max_ratio``, ``crop_max_checks``, ``flip_prob``,
            ``brightness_delta``, ``contrast_range``, ``saturation_range``, ``hue_delta``,
            ``mean``, ``std``), whose defaults are the original ADE20K pipeline. ``mean`` and
            ``std`` normalise the evaluation images too.
    """

    def __init__(
        self,
        root: str | Path = "data/ade/ADEChallengeData2016",
        name: str = "ade20k",
        num_classes: int = ADE20K_NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        reduce_zero_label: bool = True,
        class_names: Sequence[str] | str | None = "ade20k",
        palette: Sequence[Sequence[int]] | str | None = "ade20k",
        image_suffixes: Sequence[str] = (".jpg",),
        label_suffix: str = ".png",
        train_split: str = "training",
        val_split: str = "validation",
        batch_size_per_gpu: int = 2,
        val_batch_size: int = 1,
        num_workers: int = 2,
        pin_memory: bool | None = None,
        eval_scale: Sequence[int] = ADE20K_SCALE,
        val_size_divisor: int | None = None,
        test_size_divisor: int | None = 32,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        verify: str = "headers",
        **train_pipeline: Any,
    ) -> None:
        super().__init__()
        self.verify = check_verify_mode(verify)
        if not 0 < num_classes <= ignore_index <= 255:
            raise ValueError(
                f"Need 0 < num_classes ({num_classes}) <= ignore_index ({ignore_index}) <= 255."
            )
        self.root = Path(root).expanduser()
        self.name = name
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.class_names = resolve_class_names(class_names, num_classes)
        self.palette: tuple[Color, ...] = resolve_palette(palette, num_classes)
        self.image_suffixes = tuple(image_suffixes)
        self.label_suffix = label_suffix
        self.train_split = train_split
        self.val_split = val_split
        self.batch_size_per_gpu = batch_size_per_gpu
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        unknown = sorted(set(train_pipeline) - set(TRAIN_PIPELINE_OPTIONS))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown option(s) {unknown}; the training pipeline "
                f"takes {list(TRAIN_PIPELINE_OPTIONS)}: fix or remove the key(s) (see "
                "conf/data/pipeline/)."
            )
        self.train_transform = TrainTransform(
            ignore_index=ignore_index, seed=seed, **train_pipeline
        )
        mean, std = self.train_transform.mean, self.train_transform.std
        self.val_transform = EvalTransform(eval_scale, val_size_divisor, mean, std)
        self.test_transform = EvalTransform(eval_scale, test_size_divisor, mean, std)
        #: Training samples consumed over all ranks before the next train_dataloader() (resume).
        self.train_samples_seen = 0
        self.datasets: dict[str, ADE20KDataset] = {}

    def dataset(self, split: str, transform: Any = None) -> ADE20KDataset:
        """One split of this dataset with the given transform (``None``: raw pixels)."""
        return ADE20KDataset(
            self.root,
            split,
            num_classes=self.num_classes,
            reduce_zero_label=self.reduce_zero_label,
            ignore_index=self.ignore_index,
            transform=transform,
            image_suffixes=self.image_suffixes,
            label_suffix=self.label_suffix,
        )

    def prepare_files(self) -> None:
        """Make the files available without validating them; a no-op for data on disk."""

    def prepare_data(self) -> None:
        """Scan both splits as ``verify`` says and list every problem at once; never downloads.

        Raises:
            InputNotFoundError: A split folder is missing or empty.
            DatasetError: Unpaired, unreadable or invalid files (all of them listed).
        """
        self.prepare_files()
        splits = (self.train_split, self.val_split)
        for split in splits:  # a missing dataset gets its own, explanatory error
            scan_split(self.root, split, self.image_suffixes, self.label_suffix)
        report = scan(
            self.root,
            splits,
            self.verify,
            self.num_classes,
            self.reduce_zero_label,
            self.ignore_index,
            self.image_suffixes,
            self.label_suffix,
            workers=self.num_workers if self.verify == "full" else 0,
        )
        for note in report.notes:
            log.info("dataset note: %s", note)
        train = self.train_transform
        crop = crop_note(report.first_split_sizes, train.crop_size, train.scale, train.ratio_range)
        if crop:
            log.warning(crop)
        if not report.ok:
            raise DatasetError(problems_message(self.root, self.verify, report))

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.datasets["train"] = self.dataset(self.train_split, self.train_transform)
        if stage in (None, "fit", "validate"):
            self.datasets["val"] = self.dataset(self.val_split, self.val_transform)
        if stage in (None, "test", "predict"):
            self.datasets["test"] = self.dataset(self.val_split, self.test_transform)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"Call setup() before asking for the {split} dataloader.")
        dataset = self.datasets[split]
        if split == "train":
            rank, world_size = rank_and_world_size(self.rank, self.world_size)
            start = self.train_samples_seen // world_size
            sampler: Any = InfiniteSampler(len(dataset), self.seed, True, rank, world_size, start)
            batch_size = self.batch_size_per_gpu
        else:
            sampler = ShardSampler(len(dataset), self.rank, self.world_size)
            batch_size = self.val_batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=split == "train",
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def state_dict(self) -> dict[str, Any]:
        """Training-stream position for checkpoints: ``{"seed", "train_samples_seen"}``.

        ``train_samples_seen`` counts samples over all ranks. When attached to a Trainer it is
        ``global_step * accumulate_grad_batches * batch_size_per_gpu * world_size``, exact for
        checkpoints taken after an optimizer step.
        """
        seen = self.train_samples_seen
        trainer = self.trainer
        if trainer is not None:
            seen = trainer.global_step * trainer.accumulate_grad_batches
            seen *= self.batch_size_per_gpu * trainer.world_size
        return {"seed": self.seed, "train_samples_seen": seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the training stream where `state_dict` left it (same seed required).

        With the same world size the stream continues bitwise; with another one the global
        stream continues at the same position (rounded down to a multiple of the world size).
        """
        if state_dict.get("seed") != self.seed:
            raise ValueError(
                f"Checkpoint data seed {state_dict.get('seed')} differs from data.seed="
                f"{self.seed}; the sample order would not continue."
            )
        self.train_samples_seen = int(state_dict["train_samples_seen"])


class SyntheticDataModule(ADE20KDataModule):
    """`ADE20KDataModule` on a generated ADE-layout dataset (`vanseg.data.synthetic`).

    ``prepare_data`` generates the dataset into ``cache_dir`` unless it is cached; the data is
    then read by the regular ADE20K code (raw 0 = unlabelled, ``reduce_zero_label=True``).

    Args:
        cache_dir: Cache folder; ``None`` means ``$VANSEG_CACHE_DIR`` or ``~/.cache/vanseg``.
        num_train: Generated training images.
        num_val: Generated validation images.
        min_side: Smallest generated image side.
        max_side: Largest generated image side.
        data_seed: Seed of the generated content (``seed`` drives sampling/augmentation).
        num_classes: Number of generated classes.
        class_names: ``None`` gives the generator's texture names.
        **kwargs: Everything else of `ADE20KDataModule` except ``root``.
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        num_train: int = 200,
        num_val: int = 50,
        min_side: int = 240,
        max_side: int = 640,
        data_seed: int = 0,
        num_classes: int = SYNTHETIC_NUM_CLASSES,
        class_names: Sequence[str] | str | None = None,
        palette: Sequence[Sequence[int]] | str | None = None,
        name: str = "synthetic",
        **kwargs: Any,
    ) -> None:
        self.spec = SyntheticSpec(num_classes, num_train, num_val, min_side, max_side, data_seed)
        self.cache_dir = cache_dir
        super().__init__(
            root=_synthetic_root(cache_dir, self.spec),
            name=name,
            num_classes=num_classes,
            class_names=synthetic_class_names(num_classes) if class_names is None else class_names,
            palette=palette,
            **kwargs,
        )

    def prepare_files(self) -> None:
        """Generate the dataset unless the cache holds it (called by prepare_data: rank 0 only)."""
        ensure_synthetic_dataset(self.spec, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        # Cheap when cached; covers callers that skip prepare_data (tools, notebooks).
        ensure_synthetic_dataset(self.spec, self.cache_dir)
        super().setup(stage)
