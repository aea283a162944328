"""Datasets as tensors: the whole split lives on the device, batches are index slices.

Every dataset comes out as a ``TensorData``: float images (N, C, H, W) normalised with the
train split's per-channel mean and std, int64 labels. No per-sample Python in the loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search.config import DataConfig
from search.errors import DataError

# Digits are 8x8; 16x16 lets a 5-layer net pool three times and costs 4x, not 16x, of 8x8.
DIGITS_SIZE = 16
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed: the split never depends on the search seed


@dataclass(frozen=True)
class TensorData:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def to(self, device: torch.device | str) -> TensorData:
        return TensorData(
            self.name,
            self.x_train.to(device),
            self.y_train.to(device),
            self.x_val.to(device),
            self.y_val.to(device),
            self.num_classes,
        )


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Slices of (x, y); shuffled when a generator is given, in order otherwise."""
    n = x.shape[0]
    if generator is None:
        for start in range(0, n, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    order = torch.randperm(n, generator=generator).to(x.device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield x[index], y[index]


def load(config: DataConfig, seed: int = 0) -> TensorData:
    """The dataset the config names, limited as it says, on the CPU."""
    if config.dataset == "digits":
        data = load_digits()
    elif config.dataset == "synthetic":
        data = make_synthetic(
            config.synthetic_train,
            config.synthetic_val,
            config.synthetic_classes,
            config.synthetic_image_size,
            seed=seed,
        )
    else:
        assert config.data_dir is not None, "validated by Config.validate"
        data = load_torchvision(config.dataset, config.data_dir, config.download)
    return limit(data, config.train_limit, config.val_limit)


def limit(data: TensorData, train_limit: int | None, val_limit: int | None) -> TensorData:
    if train_limit is None and val_limit is None:
        return data
    return TensorData(
        data.name,
        data.x_train[:train_limit],
        data.y_train[:train_limit],
        data.x_val[:val_limit],
        data.y_val[:val_limit],
        data.num_classes,
    )


def normalise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel standardisation with the train split's statistics."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x_train - mean) / std, (x_val - mean) / std


def load_digits() -> TensorData:
    """scikit-learn's bundled handwritten digits (1797 images, 10 classes), upsampled."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(DIGITS_SPLIT_SEED))
    n_val = int(round(len(labels) * DIGITS_VAL_FRACTION))
    val, train = order[:n_val], order[n_val:]
    x_train, x_val = normalise(images[train], images[val])
    return TensorData("digits", x_train, labels[train], x_val, labels[val], 10)


def make_synthetic(
    n_train: int, n_val: int, num_classes: int, image_size: int, seed: int = 0, channels: int = 3
) -> TensorData:
    """A learnable image task generated from a seed.

    Each class is a smooth random template; an image is its class template, shifted by up
    to 2 pixels, plus noise. Wider nets do better on it, so rankings mean something.
    """
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(num_classes, channels, 4, 4, generator=generator)
    templates = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(num_classes, (n,), generator=generator)
        shifts = torch.randint(-2, 3, (n, 2), generator=generator)
        images = templates[labels]
        # Shift by rolling each image; a loop over the 25 possible shifts, not over samples.
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                if mask.any():
                    images[mask] = torch.roll(images[mask], shifts=(dy, dx), dims=(2, 3))
        images = images + 0.8 * torch.randn(images.shape, generator=generator)
        return images, labels

    x_train, y_train = sample(n_train)
    x_val, y_val = sample(n_val)
    x_train, x_val = normalise(x_train, x_val)
    return TensorData("synthetic", x_train, y_train, x_val, y_val, num_classes)


def load_torchvision(name: str, data_dir: Path, download: bool) -> TensorData:
    """CIFAR-10, MNIST or Fashion-MNIST in torchvision's on-disk format under ``data_dir``."""
    from torchvision import datasets

    dataset_class = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[
        name
    ]
    splits = []
    for train in (True, False):
        try:
            dataset = dataset_class(str(data_dir), train=train, download=download)
        except RuntimeError as error:
            raise DataError(f"dataset {name!r} not found in {str(data_dir)!r}: {error}") from None
        images = torch.as_tensor(np.asarray(dataset.data))
        if images.ndim == 3:  # MNIST-style (N, H, W)
            images = images.unsqueeze(1)
        else:  # CIFAR-style (N, H, W, C)
            images = images.permute(0, 3, 1, 2)
        splits.append((images.float() / 255.0, torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)))
    (x_train, y_train), (x_val, y_val) = splits
    x_train, x_val = normalise(x_train, x_val)
    return TensorData(name, x_train, y_train, x_val, y_val, len(dataset.classes))
