"""Dataset registry: names, metadata, embedded datasets, and the offline failure messages."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dpgen_bench.data import (
    DatasetUnavailableError,
    UnknownDatasetError,
    dataset_spec,
    list_datasets,
    load_dataset,
)

ALL = ["mnist-5k", "digits", "mnist", "fashion-mnist", "cifar10", "celeba32", "celeba64"]


def test_every_dataset_of_the_issue_is_registered_with_embedded_ones_marked_offline():
    assert set(ALL) <= set(list_datasets())
    offline = {n for n in list_datasets() if dataset_spec(n).offline}
    assert offline == {"mnist-5k", "digits"}


def test_unknown_dataset_error_lists_the_valid_names():
    with pytest.raises(UnknownDatasetError) as err:
        dataset_spec("mnist5k")
    for name in ALL:
        assert name in str(err.value)
    assert "'mnist5k'" in str(err.value)


def test_mnist5k_is_5000_real_digits_in_unit_range_500_per_class():
    ds = load_dataset("mnist-5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) == 1.0
    assert ds.class_counts().tolist() == [500] * 10
    assert dataset_spec("mnist-5k").size == len(ds)
    # Real digits, not noise: most pixels are background, the ink sits in the middle.
    assert float((ds.images == 0).float().mean()) > 0.6
    assert float(ds.images[:, :, 10:18, 10:18].mean()) > 3 * float(ds.images[:, :, :3, :].mean())


def test_digits_is_scaled_from_0_16_to_unit_range():
    ds = load_dataset("digits")
    assert ds.images.shape == (1797, 1, 8, 8)
    assert float(ds.images.max()) == 1.0 and float(ds.images.min()) == 0.0
    assert ds.info.num_classes == 10 and dataset_spec("digits").size == 1797


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mnist", ["MNIST/raw/train-images-idx3-ubyte", "MNIST/raw/t10k-labels-idx1-ubyte"]),
        ("fashion-mnist", ["FashionMNIST/raw/train-images-idx3-ubyte"]),
        ("cifar10", ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"]),
        ("celeba32", ["celeba/img_align_celeba", "celeba/list_attr_celeba.txt"]),
        ("celeba64", ["celeba/list_eval_partition.txt"]),
    ],
)
def test_offline_torchvision_dataset_fails_fast_naming_files_and_download_option(tmp_path, name, expected):
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset(name, data_dir=tmp_path)
    msg = str(err.value)
    for rel in expected:
        assert str(tmp_path / rel) in msg
    assert "download=True" in msg and "--download" in msg
    assert list(tmp_path.iterdir()) == []  # a refused load writes nothing


def test_data_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DPGEN_BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match=str(tmp_path / "MNIST" / "raw")):
        load_dataset("mnist")


def _write_idx(path: Path, array: np.ndarray) -> None:
    # The IDX format torchvision reads: magic (0, 0, dtype code 0x08 = uint8, ndim), big-endian dims, data.
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_from_files_in_data_dir_pools_train_and_test_and_marks_official_test(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(30) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", np.full((10, 28, 28), 255))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(10))
    assert dataset_spec("mnist").available(tmp_path)
    ds = load_dataset("mnist", data_dir=tmp_path)
    assert ds.images.shape == (40, 1, 28, 28) and ds.images.dtype == torch.float32
    assert float(ds.images[30:].min()) == 1.0  # 255 → 1.0
    assert ds.meta["official_test"].tolist() == [False] * 30 + [True] * 10
    assert ds.labels.tolist() == list(np.arange(30) % 10) + list(range(10))


def test_modifying_a_loaded_dataset_in_place_does_not_change_the_next_load():
    first = load_dataset("mnist-5k")
    first.images.zero_()
    first.labels.zero_()
    second = load_dataset("mnist-5k")
    assert float(second.images.max()) == 1.0 and second.class_counts().tolist() == [500] * 10
