"""Specification of the data loaders: shapes, scaling to [0, 1], splits, IDX files, errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from runs import whole_and_resumed

from eqspice.learning.run.config import ConfigError, load_config
from eqspice.learning.run.loop import train

from eqspice.learning.run.data import (
    FASHION_MNIST_DIR,
    DataError,
    Dataset,
    augmented,
    load_dataset,
    read_idx,
    validate_features,
)

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written independently of the reader."""
    assert array.dtype == np.uint8
    magic = (0x08 << 8) | array.ndim  # 0x00000803 for 3-D images, 0x00000801 for labels
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + array.tobytes(order="C")


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    data = idx_bytes(array)
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def fake_mnist(directory: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    """Write a tiny MNIST-like set (train files plain, test files gzipped); return the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    for key, array in arrays.items():
        write_idx(directory / IDX_NAMES[key], array, compress=key.startswith("test"))
    return arrays


def assert_well_formed(data: Dataset) -> None:
    assert data.x_train.dtype == np.float64 and data.x_test.dtype == np.float64
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    for x in (data.x_train, data.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    for y in (data.y_train, data.y_test):
        assert y.min() >= 0 and y.max() < data.n_classes
    assert data.x_train.shape[1] == data.x_test.shape[1] == data.n_features


# --- XOR -------------------------------------------------------------------------------


def test_xor_labels_are_the_xor_of_the_features():
    data = load_dataset("xor")
    assert_well_formed(data)
    assert data.x_train.shape == (4, 2) and data.n_classes == 2
    assert set(map(tuple, data.x_train)) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    expected = (data.x_train[:, 0] != data.x_train[:, 1]).astype(np.int64)
    np.testing.assert_array_equal(data.y_train, expected)


def test_xor_tests_on_its_training_samples_in_separate_arrays():
    data = load_dataset("xor")
    np.testing.assert_array_equal(data.x_train, data.x_test)
    np.testing.assert_array_equal(data.y_train, data.y_test)
    assert not np.shares_memory(data.x_train, data.x_test)


# --- Iris and digits -------------------------------------------------------------------


def test_iris_shapes_and_scaling():
    data = load_dataset("iris")
    assert_well_formed(data)
    assert data.n_features == 4 and data.n_classes == 3
    assert len(data.y_train) == 120 and len(data.y_test) == 30
    # Min-max with the training split's statistics: each training feature spans exactly [0, 1].
    np.testing.assert_allclose(data.x_train.min(axis=0), 0.0)
    np.testing.assert_allclose(data.x_train.max(axis=0), 1.0)


def test_digits_shapes_and_scaling():
    data = load_dataset("digits")
    assert_well_formed(data)
    assert data.n_features == 64 and data.n_classes == 10
    assert len(data.y_train) + len(data.y_test) == 1797
    # Pixels 0..16 divided by 16: every feature is a multiple of 1/16.
    np.testing.assert_allclose(data.x_train * 16, np.round(data.x_train * 16))


@pytest.mark.parametrize("name", ["iris", "digits"])
def test_split_is_stratified(name):
    data = load_dataset(name, test_fraction=0.2)
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test, minlength=data.n_classes) / len(data.y_test)
    np.testing.assert_allclose(test_share, train_share, atol=0.02)


def test_iris_test_split_has_ten_of_each_class():
    np.testing.assert_array_equal(np.bincount(load_dataset("iris").y_test), [10, 10, 10])


@pytest.mark.parametrize("name", ["iris", "digits"])
def test_split_is_deterministic_for_a_seed_and_changes_with_it(name):
    first, again = load_dataset(name, seed=3), load_dataset(name, seed=3)
    other = load_dataset(name, seed=4)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)
    assert not np.array_equal(first.x_train, other.x_train)


def test_test_fraction_sets_the_split_size():
    data = load_dataset("digits", test_fraction=0.5)
    assert abs(len(data.y_test) - 1797 / 2) <= 1


def test_limits_keep_the_first_samples_of_each_split():
    full = load_dataset("digits", seed=1)
    small = load_dataset("digits", seed=1, limit_train=7, limit_test=3)
    np.testing.assert_array_equal(small.x_train, full.x_train[:7])
    np.testing.assert_array_equal(small.y_test, full.y_test[:3])


@pytest.mark.parametrize(
    "options, mentioned",
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"limit_train": 0}, "limit_train"),
        ({"limit_test": -2}, "limit_test"),
    ],
)
def test_bad_options_are_refused(options, mentioned):
    with pytest.raises(DataError, match=mentioned):
        load_dataset("iris", **options)


# --- IDX files -------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "images-idx3-ubyte", images, compress=compress)
    result = read_idx(path)
    assert result.dtype == np.uint8
    np.testing.assert_array_equal(result, images)


def test_read_idx_reads_big_endian_int32(tmp_path):
    values = np.array([1, -2, 70000], dtype=">i4")
    path = tmp_path / "values-idx1-int"
    path.write_bytes(struct.pack(">I", 0x00000C01) + struct.pack(">i", 3) + values.tobytes())
    np.testing.assert_array_equal(read_idx(path), [1, -2, 70000])


def test_mnist_from_idx_files_is_flattened_and_scaled_by_1_over_255(tmp_path):
    arrays = fake_mnist(tmp_path)
    data = load_dataset("mnist", data_dir=tmp_path)
    assert_well_formed(data)
    assert data.x_train.shape == (12, 784) and data.x_test.shape == (5, 784)
    np.testing.assert_allclose(data.x_train, arrays["train_images"].reshape(12, 784) / 255)
    np.testing.assert_allclose(data.x_test, arrays["test_images"].reshape(5, 784) / 255)
    np.testing.assert_array_equal(data.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(data.y_test, arrays["test_labels"])


def test_fashion_mnist_reads_a_given_data_dir(tmp_path):
    arrays = fake_mnist(tmp_path, n_train=6, n_test=4)
    data = load_dataset("fashion_mnist", data_dir=str(tmp_path), limit_train=3)
    assert data.name == "fashion_mnist" and data.n_classes == 10
    assert data.x_train.shape == (3, 784) and data.x_test.shape == (4, 784)
    np.testing.assert_array_equal(data.y_train, arrays["train_labels"][:3])


# --- errors ----------------------------------------------------------------------------


def assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_name_lists_the_known_names():
    with pytest.raises(DataError) as error:
        load_dataset("cifar")
    message = assert_one_line(error)
    for name in ("cifar", "xor", "iris", "digits", "fashion_mnist", "mnist"):
        assert name in message


def test_mnist_without_data_dir_asks_for_one():
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    assert "--data-dir" in assert_one_line(error)


def test_missing_idx_file_names_the_full_path(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / IDX_NAMES["train_labels"]).unlink()
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    message = assert_one_line(error)
    assert str(tmp_path / IDX_NAMES["train_labels"]) in message and "--data-dir" in message


def test_missing_fashion_mnist_names_the_debian_package(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("fashion_mnist", data_dir=tmp_path / "nowhere")
    message = assert_one_line(error)
    assert str(tmp_path / "nowhere" / IDX_NAMES["train_images"]) in message
    assert "dataset-fashion-mnist" in message


def test_bad_magic_number_is_refused(tmp_path):
    fake_mnist(tmp_path)
    path = tmp_path / IDX_NAMES["train_images"]
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataError, match="magic") as error:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in assert_one_line(error)


def test_truncated_payload_is_refused(tmp_path):
    fake_mnist(tmp_path)
    path = tmp_path / IDX_NAMES["train_images"]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated") as error:
        read_idx(path)
    assert str(path) in assert_one_line(error)


def test_truncated_gzip_is_refused(tmp_path):
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(500, dtype=np.uint8), compress=True)
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError) as error:
        read_idx(path)
    assert str(path) in assert_one_line(error)


def test_image_and_label_count_mismatch_is_refused(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / IDX_NAMES["train_labels"], np.zeros(11, dtype=np.uint8))
    with pytest.raises(DataError) as error:
        load_dataset("mnist", data_dir=tmp_path)
    message = assert_one_line(error)
    assert "12 images" in message and "11 labels" in message


def test_labels_out_of_range_are_refused(tmp_path):
    fake_mnist(tmp_path)
    write_idx(tmp_path / IDX_NAMES["test_labels"], np.array([0, 1, 10, 2, 3], dtype=np.uint8))
    with pytest.raises(DataError, match="y_test") as error:
        load_dataset("mnist", data_dir=tmp_path)
    assert "0..9" in assert_one_line(error)


def test_validate_features_counts_nan_and_inf():
    x = np.array([[0.0, np.nan], [np.inf, 1.0], [-np.inf, 0.5]])
    with pytest.raises(DataError, match="my x_train: 3 of 6") as error:
        validate_features(x, "my x_train")
    assert_one_line(error)
    validate_features(np.zeros((2, 2)), "clean")


def test_dataset_refuses_nan_features():
    x = np.array([[0.0], [np.nan]])
    y = np.array([0, 1])
    with pytest.raises(DataError, match="toy x_test: 1 of 2"):
        Dataset("toy", x_train=x[:1], y_train=y[:1], x_test=x, y_test=y, n_classes=2)


# --- the real Fashion-MNIST ------------------------------------------------------------


def test_real_fashion_mnist_loads_from_the_debian_directory():
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} not installed (Debian package dataset-fashion-mnist)")
    data = load_dataset("fashion_mnist", limit_train=100, limit_test=50)
    assert_well_formed(data)
    assert data.x_train.shape == (100, 784) and data.x_test.shape == (50, 784)
    assert data.n_classes == 10
    assert len(np.unique(data.y_train)) > 5


# --- augmentation ------------------------------------------------------------------------


class _Draws:
    """A generator stand-in that returns the given shifts and flip draws (and counts the calls)."""

    def __init__(self, shifts, flips):
        self.shifts, self.flips = np.array(shifts), np.array(flips, dtype=float)

    def integers(self, low, high, size):
        assert (low, high) == (-1, 2) and size == self.shifts.shape
        return self.shifts

    def random(self, n):
        assert n == len(self.flips)
        return self.flips


def test_augmentation_moves_and_mirrors_each_image_by_its_draws():
    image = np.arange(1.0, 10.0).reshape(3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    x = np.stack([image.ravel(), image.ravel()]) / 10
    # image 0: down by 1 (dy = 1), not moved sideways, not mirrored (draw 0.7 >= 0.5)
    # image 1: up by 1 (dy = -1) and right by 1 (dx = 1), mirrored (draw 0.2 < 0.5) before it moves
    out = augmented(x, 3, 1, True, _Draws(shifts=[[1, -1], [0, 1]], flips=[0.7, 0.2]))
    by_hand = [
        [[0, 0, 0], [1, 2, 3], [4, 5, 6]],
        [[0, 6, 5], [0, 9, 8], [0, 0, 0]],  # mirrored: 3 2 1 / 6 5 4 / 9 8 7
    ]
    np.testing.assert_array_equal(out.reshape(2, 3, 3), np.array(by_hand) / 10)
    np.testing.assert_array_equal(x[0], image.ravel() / 10)  # the data are not written


def test_augmentation_is_drawn_from_the_run_generator():
    x = load_dataset("digits").x_train[:50]
    a = augmented(x, 8, 2, True, np.random.default_rng(5))
    b = augmented(x, 8, 2, True, np.random.default_rng(5))
    c = augmented(x, 8, 2, True, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a shift moves pixels, never makes them: every image keeps or loses ink, it never gains
    assert np.all(a.sum(axis=1) <= x.sum(axis=1) + 1e-12)


def test_an_augmented_training_run_resumes_bit_for_bit(tmp_path):
    overrides = {
        "engine.backend": "native", "training.epochs": 3, "data.limit_train": 64, "data.limit_test": 20,
        "data.augment_shift_px": 1, "data.augment_flip": True,
    }  # fmt: skip
    whole, resumed = whole_and_resumed(load_config("examples/digits.toml", overrides), tmp_path)
    np.testing.assert_array_equal(whole.g_s, resumed.g_s)
    plain = train(load_config("examples/digits.toml", {**overrides, "data.augment_shift_px": 0, "data.augment_flip": False}), tmp_path / "plain", progress=False)
    assert not np.array_equal(plain.g_s, whole.g_s)  # the images the circuit saw were moved


@pytest.mark.parametrize(
    "overrides, mentioned",
    [
        ({"data.name": "iris", "network.layers": [4, 8, 3], "data.augment_flip": True}, "iris has no images"),
        ({"data.augment_shift_px": 9}, "augment_shift_px"),
        ({"data.augment_shift_px": -1}, "augment_shift_px"),
    ],
)
def test_bad_augmentation_is_refused_before_anything_runs(overrides, mentioned):
    with pytest.raises(ConfigError, match=mentioned) as error:
        load_config("examples/digits.toml", overrides)
    assert_one_line(error)
