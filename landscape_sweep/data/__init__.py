"""Datasets as standardised in-memory tensors (DataBundle) and a seeded, resumable minibatch loader."""

from .core import DataBundle
from .datasets import DATASETS, load_data
from .loader import AUGMENTATIONS, TensorLoader

__all__ = ["AUGMENTATIONS", "DATASETS", "DataBundle", "TensorLoader", "load_data"]
