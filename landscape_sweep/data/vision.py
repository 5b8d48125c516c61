"""torchvision image datasets read by their own classes, converted once to in-memory float tensors in [0, 1].

Returns unstandardised `(train, test, num_classes)` with x float32 (N, C, H, W) and y int64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core import Raw, Split

# name -> (torchvision class name, num_classes, standard augmentation)
VISION = {
    "cifar10": ("CIFAR10", 10, "crop_flip"),
    "cifar100": ("CIFAR100", 100, "crop_flip"),
    "mnist": ("MNIST", 10, None),
    "fashion_mnist": ("FashionMNIST", 10, None),
    "svhn": ("SVHN", 10, "crop"),
}


def _open(name: str, root: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    cls_name = VISION[name][0]
    cls = getattr(tvd, cls_name)
    split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
    try:
        return cls(str(root), download=download, **split)
    except Exception as e:  # missing/corrupt files (RuntimeError) or a failed download (URLError, OSError)
        if download:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FileNotFoundError(
                f"data.root={root}: downloading {cls_name} failed ({why}); place the files there by hand"
            ) from e
        if isinstance(e, RuntimeError) and "not found" in str(e):
            raise FileNotFoundError(
                f"data.root={root}: {cls_name} files not found or corrupted (offline?); "
                "place them there or set data.download=true"
            ) from e
        raise


def _to_tensors(ds, name: str) -> Split:
    if name == "svhn":  # data: uint8 (N, 3, 32, 32); labels: int64 with 0 for the digit 0
        x, y = torch.from_numpy(np.ascontiguousarray(ds.data)), torch.as_tensor(ds.labels)
    elif name.startswith("cifar"):  # data: uint8 (N, 32, 32, 3); targets: list[int]
        x, y = torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.as_tensor(ds.targets)
    else:  # (Fashion)MNIST: data uint8 (N, 28, 28); targets int64 tensor
        x, y = ds.data.unsqueeze(1), ds.targets
    return x.float().div_(255.0).contiguous(), y.long()


def raw_vision(name: str, root: str | Path, download: bool = False) -> Raw:
    """Train and test split of torchvision dataset `name` from `root` (downloaded there if `download`)."""
    root = Path(root).expanduser()
    train = _to_tensors(_open(name, root, True, download), name)
    test = _to_tensors(_open(name, root, False, download), name)
    return train, test, VISION[name][1]
