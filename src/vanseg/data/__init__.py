"""Data: ADE20K-layout datasets, the original augmentation pipeline, samplers, DataModules."""

from vanseg.data.ade20k import ADE20KDataset
from vanseg.data.classes import ADE20K_CLASSES, ADE20K_PALETTE
from vanseg.data.datamodule import ADE20KDataModule, SyntheticDataModule
from vanseg.data.sampler import InfiniteSampler, ShardSampler
from vanseg.data.synthetic import SyntheticSpec, ensure_synthetic_dataset
from vanseg.data.transforms import EvalTransform, TrainTransform
from vanseg.errors import DatasetError, InputNotFoundError

__all__ = [
    "ADE20K_CLASSES",
    "ADE20K_PALETTE",
    "ADE20KDataModule",
    "ADE20KDataset",
    "DatasetError",
    "InputNotFoundError",
    "EvalTransform",
    "InfiniteSampler",
    "ShardSampler",
    "SyntheticDataModule",
    "SyntheticSpec",
    "TrainTransform",
    "ensure_synthetic_dataset",
]
