import hashlib
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets as tv

from search.config import DataConfig
from search.data import (
    SHAPE_CLASSES,
    _random_patches,
    _shape_distance,
    batches,
    load,
    load_digits,
    load_mnist_5k,
    load_shapes,
    load_textures,
    make_synthetic,
)
from search.errors import DataError
from search.train import TrainSettings, fit


def test_digits_are_bundled_split_deterministically_and_normalised() -> None:
    a, b = load_digits(), load_digits()
    assert a.x_train.shape == (1438, 1, 16, 16) and a.x_val.shape == (359, 1, 16, 16)
    assert torch.equal(a.y_val, b.y_val) and a.num_classes == 10
    assert abs(a.x_train.mean().item()) < 1e-4 and abs(a.x_train.std().item() - 1) < 1e-3


def test_synthetic_is_a_function_of_its_seed() -> None:
    a, b = make_synthetic(64, 16, 3, 8, seed=1), make_synthetic(64, 16, 3, 8, seed=1)
    c = make_synthetic(64, 16, 3, 8, seed=2)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (64, 3, 8, 8) and set(a.y_train.tolist()) <= {0, 1, 2}


def test_limits_cut_both_splits() -> None:
    data = load(DataConfig(dataset="digits", train_limit=100, val_limit=50))
    assert len(data.y_train) == 100 and len(data.y_val) == 50


def test_batches_cover_every_sample_once() -> None:
    x, y = torch.arange(10).float(), torch.arange(10)
    seen = torch.cat([yb for _, yb in batches(x, y, 3, torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))


# -- torchvision datasets in their real on-disk formats ------------------------------------


def write_cifar10(root: Path, per_batch: int) -> list[tuple[str, str]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return [(name, hashlib.md5((folder / name).read_bytes()).hexdigest()) for name in [*names, "batches.meta"]]


def test_cifar10_is_read_from_its_pickled_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sums = dict(write_cifar10(tmp_path, per_batch=4))
    # torchvision checks the published checksums; point them at these tiny files instead.
    monkeypatch.setattr(tv.CIFAR10, "train_list", [[f"data_batch_{i}", sums[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(tv.CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(tv.CIFAR10, "meta", {**tv.CIFAR10.meta, "md5": sums["batches.meta"]})
    data = load(DataConfig(dataset="cifar10", data_dir=tmp_path))
    assert data.x_train.shape == (20, 3, 32, 32) and data.x_val.shape == (4, 3, 32, 32)
    assert data.num_classes == 10 and data.y_train.dtype == torch.int64


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"),
                                             ("kmnist", "KMNIST")])
def test_mnist_style_is_read_from_idx_files(tmp_path: Path, name: str, folder: str) -> None:
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        images[prefix] = rng.integers(0, 256, (n, 28, 28))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[prefix])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))
    data = load(DataConfig(dataset=name, data_dir=tmp_path))
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_val.shape == (5, 1, 28, 28)
    assert data.num_classes == 10
    # What a user does with new images: pixels / 255, then the recorded training statistics.
    assert data.normalisation is not None
    mean, std = (torch.tensor(v).reshape(1, -1, 1, 1) for v in (data.normalisation.mean, data.normalisation.std))
    pixels = torch.from_numpy(images["t10k"]).float().unsqueeze(1) / 255
    assert torch.allclose((pixels - mean) / std, data.x_val, atol=1e-5)
    assert data.normalisation == load(DataConfig(dataset=name, data_dir=tmp_path, val_limit=2)).normalisation


def test_mnist_5k_is_bundled_real_digits_split_by_class_the_same_every_time() -> None:
    a, b = load(DataConfig(dataset="mnist-5k")), load_mnist_5k()
    assert a.x_train.shape == (4000, 1, 28, 28) and a.x_val.shape == (1000, 1, 28, 28) and a.num_classes == 10
    assert a.y_train.bincount().tolist() == [400] * 10 and a.y_val.bincount().tolist() == [100] * 10
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert abs(a.x_train.mean().item()) < 1e-4 and abs(a.x_train.std().item() - 1) < 1e-3
    assert len(set(a.y_train[:20].tolist())) > 3  # shuffled: the file itself is sorted by class
    # Real strokes, not noise: most pixels are background, a digit's ink is a minority.
    assert (a.x_train == a.x_train.min()).float().mean() > 0.5


def test_mnist_5k_reads_its_table_layout_and_names_a_bad_file(tmp_path: Path) -> None:
    import gzip

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 110)  # sorted by class, as the shipped file is
    rows = np.column_stack([rng.integers(0, 256, (len(labels), 784)), labels])
    table = tmp_path / "table.csv.gz"
    with gzip.open(table, "wt") as out:
        np.savetxt(out, rows, fmt="%d", delimiter=",")
    data = load_mnist_5k(table)
    assert data.x_train.shape == (100, 1, 28, 28) and data.y_val.bincount().tolist() == [100] * 10
    pixels = torch.from_numpy(rows[:, :-1]).float().reshape(-1, 1, 28, 28) / 255
    mean, std = (torch.tensor(v).reshape(1, -1, 1, 1) for v in (data.normalisation.mean, data.normalisation.std))
    first = data.x_train[:1] * std + mean  # each training image is one of the file's rows, unchanged
    assert torch.isclose(pixels, first, atol=1e-4).flatten(1).all(1).sum() == 1
    cut = tmp_path / "cut.csv.gz"
    with gzip.open(cut, "wt") as out:
        out.write("1,2,3\n")
    with pytest.raises(DataError, match="cut.csv.gz.*not rows of 785"):
        load_mnist_5k(cut)
    with pytest.raises(DataError, match="cannot read the mnist-5k table"):
        load_mnist_5k(tmp_path / "missing.csv.gz")


def test_a_data_dir_without_the_dataset_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="'cifar10' not found in"):
        load(DataConfig(dataset="cifar10", data_dir=tmp_path))


def test_textures_are_bundled_balanced_and_the_same_every_time() -> None:
    a, b = load_textures(200, 100), load_textures(200, 100)
    assert a.x_train.shape == (200, 1, 16, 16) and a.x_val.shape == (100, 1, 16, 16) and a.num_classes == 10
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert a.y_train.bincount().tolist() == [20] * 10
    assert abs(a.x_train.mean().item()) < 1e-4 and abs(a.x_train.std().item() - 1) < 1e-3
    config = load(DataConfig(dataset="textures", texture_train=50, texture_val=20))
    assert len(config.y_train) == 50 and len(config.y_val) == 20


def test_textures_come_in_any_size_cut_from_a_larger_region() -> None:
    big = load(DataConfig(dataset="textures", texture_train=50, texture_val=20, texture_size=28))
    assert big.x_train.shape == (50, 1, 28, 28) and big.x_val.shape == (20, 1, 28, 28)
    assert torch.equal(big.x_train, load_textures(50, 20, size=28).x_train)
    assert big.y_train.bincount().tolist() == [5] * 10
    # A 28-pixel patch covers 28/16 times the picture that a 16-pixel one does, not the same region
    # resampled: shrunk to 16 pixels it is no copy of the 16-pixel patch.
    small = load_textures(50, 20).x_train
    shrunk = torch.nn.functional.interpolate(big.x_train, size=16, mode="area")
    assert not torch.allclose(shrunk, small, atol=0.5)


def test_texture_patches_stay_in_their_split_of_the_picture() -> None:
    # A picture whose value is its column's position: a patch's pixels say where it was cut.
    columns = torch.linspace(0, 1, 400).expand(300, 400)[None, None]
    generator = torch.Generator().manual_seed(0)
    validation = _random_patches(columns, 64, 0.7, 1.0, 16, generator)
    training = _random_patches(columns, 64, 0.0, 0.7, 28, generator)
    assert validation.min() >= 0.7 - 1e-3 and training.max() <= 0.7 + 1e-3
    assert validation.std(dim=(1, 2, 3)).min() > 0  # rotated and scaled, not constant crops


def test_shapes_are_generated_balanced_normalised_and_the_same_every_time() -> None:
    a, b = load_shapes(200, 100), load(DataConfig(dataset="shapes", shapes_train=200, shapes_val=100))
    assert a.x_train.shape == (200, 1, 16, 16) and a.x_val.shape == (100, 1, 16, 16) and a.num_classes == 10
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert a.y_train.bincount().tolist() == [20] * 10 and a.y_val.bincount().tolist() == [10] * 10
    assert abs(a.x_train.mean().item()) < 1e-4 and abs(a.x_train.std().item() - 1) < 1e-3
    assert not torch.equal(a.y_train[:100], a.y_val)  # both splits shuffled, each its own draw
    big = load(DataConfig(dataset="shapes", shapes_train=20, shapes_val=10, shapes_size=28))
    assert big.x_train.shape == (20, 1, 28, 28) and big.name == "shapes"


# Points (x, y) in a shape's own frame (radius 1) inside and outside it, at a stroke of 0.2.
SHAPE_POINTS = {
    "disk": ([(0, 0), (0.9, 0)], [(0.8, 0.8)]),
    "ring": ([(0.8, 0), (0, -0.8)], [(0, 0), (0.3, 0.3)]),
    "square": ([(0, 0), (0.7, 0.7)], [(0.9, 0)]),
    "frame": ([(0.75, 0), (0.75, 0.75)], [(0, 0), (0.3, 0.3)]),
    "triangle": ([(0, 0), (0, -0.5)], [(0.8, 0.8), (-0.8, 0.8)]),
    "plus": ([(0, 0), (0.9, 0), (0, -0.9)], [(0.5, 0.5)]),
    "ellipse": ([(0, 0), (0.9, 0)], [(0, 0.6)]),
    "half-disk": ([(0, 0.5), (0.8, 0.2)], [(0, -0.5)]),
    "crescent": ([(-0.8, 0), (0, 0.9)], [(0.3, 0), (0, 0)]),
    "tee": ([(0.9, -0.6), (0, 0.5)], [(0.5, 0.5), (-0.5, 0.4)]),
}


@pytest.mark.parametrize("name", SHAPE_CLASSES)
def test_each_shape_is_drawn_where_its_name_says(name: str) -> None:
    inside, outside = SHAPE_POINTS[name]
    points = torch.tensor(inside + outside, dtype=torch.float32)
    distance = _shape_distance(SHAPE_CLASSES.index(name), points[:, 0], points[:, 1], torch.tensor(0.2))
    assert (distance[: len(inside)] < 0).all() and (distance[len(inside) :] > 0).all()


def test_a_shape_image_shows_its_label() -> None:
    # Labels and drawings stay paired through the shuffle: a small convnet trained for a few
    # epochs on 1,000 images is far above chance (0.1) on images it never saw.
    data = load_shapes(1000, 300)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(32 * 16, 10))
    history = fit(net, data.x_train, data.y_train, data.x_val, data.y_val,
                  TrainSettings(epochs=6, batch_size=50, lr=3e-3))
    assert history[-1].val_acc > 0.3


def test_derived_tensors_never_follow_the_data_into_a_copy() -> None:
    data = make_synthetic(16, 8, num_classes=2, image_size=8)
    data.derived.get("features", lambda: (torch.ones(3),), max_bytes=1024)
    assert data.derived.nbytes == 12
    for copy in (replace(data, x_train=data.x_train * 2), data.to("cpu"), pickle.loads(pickle.dumps(data))):
        assert copy.derived is not data.derived and copy.derived.nbytes == 0
    assert data.derived.nbytes == 12
