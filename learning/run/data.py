"""Data sets for training: XOR, Iris, 8x8 digits, Fashion-MNIST and MNIST.

Every loader returns a :class:`Dataset` with features ``x[sample, feature]``
scaled to ``[0, 1]`` (float64) and labels ``y[sample]`` in ``0..n_classes-1``
(int64).  The features become input voltages in the circuit, so ``[0, 1]`` is
the range the input sources are designed for.

Nothing is ever downloaded.  XOR is built here; Iris and digits ship with
scikit-learn; Fashion-MNIST is read from the IDX files that Debian's
``dataset-fashion-mnist`` package installs at :data:`FASHION_MNIST_DIR`;
MNIST is read from IDX files in a directory the user names (``--data-dir``).
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

KNOWN_DATASETS = ("xor", "iris", "digits", "fashion_mnist", "mnist")

# data sets whose features are the pixels of square images, row by row: name -> side in pixels
IMAGE_SIDES = {"digits": 8, "fashion_mnist": 28, "mnist": 28}

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# IDX type byte -> big-endian element type (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


class DataError(ValueError):
    """Bad or missing data; the message is one line naming the problem and the fix."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set split into training and test samples.

    Attributes
    ----------
    name : str
        The data set's name, one of :data:`KNOWN_DATASETS` for loaded sets.
    x_train, x_test : ndarray of float64, shape (n_samples, n_features)
        Features scaled to ``[0, 1]``; they become input voltages.
    y_train, y_test : ndarray of int64, shape (n_samples,)
        Class labels in ``0..n_classes-1``.
    n_classes : int
        Number of classes.

    Notes
    -----
    Construction checks the shapes, that the features are finite and that the
    labels are in range, and raises :class:`DataError` otherwise.  ``eq=False``
    because array fields make field-wise ``==`` ambiguous.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    def __post_init__(self) -> None:
        _check_split(self.name, "train", self.x_train, self.y_train, self.n_classes)
        _check_split(self.name, "test", self.x_test, self.y_test, self.n_classes)
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise DataError(
                f"{self.name}: x_train has {self.x_train.shape[1]} features but x_test has "
                f"{self.x_test.shape[1]}; both splits must have the same features"
            )

    @property
    def n_features(self) -> int:
        """Number of features per sample (input lines of the circuit)."""
        return int(self.x_train.shape[1])


def validate_features(x: np.ndarray, where: str) -> None:
    """Refuse features that contain NaN or infinity.

    Parameters
    ----------
    x : ndarray
        Features, any shape.
    where : str
        What ``x`` is, for the message, e.g. ``"iris x_train"``.

    Raises
    ------
    DataError
        If any value of ``x`` is NaN or +-inf; the message gives ``where`` and
        how many values are bad.
    """
    n_bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if n_bad:
        raise DataError(
            f"{where}: {n_bad} of {np.size(x)} feature values are NaN or inf; "
            "clean the data or drop those samples"
        )


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """Load a data set by name, split and scaled to ``[0, 1]``.

    Parameters
    ----------
    name : str
        One of ``"xor"``, ``"iris"``, ``"digits"``, ``"fashion_mnist"``, ``"mnist"``.
    data_dir : str or path-like, optional
        Directory holding the four IDX files (plain or ``.gz``).  Defaults to
        :data:`FASHION_MNIST_DIR` for Fashion-MNIST; required for MNIST.
        Ignored by the other data sets.
    seed : int
        Random state of the train/test split (Iris and digits only).
    test_fraction : float
        Fraction of samples put in the test split, in ``(0, 1)`` (Iris and
        digits only; XOR trains and tests on its 4 samples, the IDX sets come
        split).
    limit_train, limit_test : int, optional
        Keep only the first N samples of each split, for tiny runs.

    Returns
    -------
    Dataset
        float64 features in ``[0, 1]`` and int64 labels.

    Raises
    ------
    DataError
        For an unknown name, bad options, missing or malformed files, NaN or
        inf features, or labels out of range.

    Notes
    -----
    Scaling: Iris is min-max scaled with the training split's minimum and
    maximum, and the test split clipped to ``[0, 1]`` (no test statistics leak
    into training); digits pixels (0..16) are divided by 16; IDX images
    (0..255) by 255.
    """
    _check_options(test_fraction, limit_train, limit_test)
    if name == "xor":
        x_train, y_train, x_test, y_test, n_classes = _xor()
    elif name in ("iris", "digits"):
        x_train, y_train, x_test, y_test, n_classes = _sklearn_split(name, seed, test_fraction)
    elif name in ("fashion_mnist", "mnist"):
        directory = _idx_directory(name, data_dir)
        x_train, y_train = _idx_split(name, directory, "train", limit_train)
        x_test, y_test = _idx_split(name, directory, "test", limit_test)
        n_classes = 10
    else:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(KNOWN_DATASETS)}")
    return Dataset(
        name=name,
        x_train=np.asarray(x_train[:limit_train], dtype=np.float64),
        y_train=np.asarray(y_train[:limit_train], dtype=np.int64),
        x_test=np.asarray(x_test[:limit_test], dtype=np.float64),
        y_test=np.asarray(y_test[:limit_test], dtype=np.int64),
        n_classes=n_classes,
    )


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzip-compressed.

    The header is a big-endian 32-bit magic number ``0x0000TTDD`` (``TT`` the
    element type: 08 uint8, 09 int8, 0B int16, 0C int32, 0D float32,
    0E float64; ``DD`` the number of dimensions), then ``DD`` big-endian int32
    sizes, then the elements, big-endian, in C order.

    Parameters
    ----------
    path : str or path-like
        The file; gzip is recognised by its content, not its name.

    Returns
    -------
    ndarray
        The array, in native byte order, with the shape the header gives.

    Raises
    ------
    DataError
        If the file cannot be read, the magic number is wrong, or the payload
        size does not match the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    dtype, shape, offset = _parse_idx_header(path, raw)
    n_expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    n_payload = len(raw) - offset
    if n_payload != n_expected:
        raise DataError(
            f"{path}: header says shape {shape} of {dtype.name} ({n_expected} bytes) but the "
            f"payload has {n_payload} bytes; the file is truncated or corrupt, replace it"
        )
    flat = np.frombuffer(raw, dtype=dtype, offset=offset)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _check_options(test_fraction: float, limit_train: int | None, limit_test: int | None) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction={test_fraction!r}; it must be strictly between 0 and 1")
    for option, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise DataError(f"{option}={value!r}; it must be a positive integer or None")


def _check_split(name: str, split: str, x: np.ndarray, y: np.ndarray, n_classes: int) -> None:
    where = f"{name} {split}"
    if np.ndim(x) != 2 or np.ndim(y) != 1:
        raise DataError(
            f"{where}: x has shape {np.shape(x)} and y {np.shape(y)}; "
            "need x of shape (n_samples, n_features) and y of shape (n_samples,)"
        )
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} samples but {len(y)} labels; they must match")
    validate_features(x, f"{name} x_{split}")
    out_of_range = (y < 0) | (y >= n_classes)
    if np.any(out_of_range):
        raise DataError(
            f"{name} y_{split}: {int(np.count_nonzero(out_of_range))} labels outside "
            f"0..{n_classes - 1} (e.g. {int(y[out_of_range][0])}); fix the labels or n_classes"
        )


def _xor() -> tuple:
    """The 4 XOR samples; train and test are the same samples (separate copies)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.logical_xor(x[:, 0], x[:, 1]).astype(np.int64)
    return x, y, x.copy(), y.copy(), 2


def _sklearn_split(name: str, seed: int, test_fraction: float) -> tuple:
    """Iris or digits from scikit-learn, stratified split, scaled to [0, 1]."""
    from sklearn.datasets import load_digits, load_iris
    from sklearn.model_selection import train_test_split

    bunch = load_iris() if name == "iris" else load_digits()
    x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int64)
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=y
        )
    except ValueError as exc:
        message = str(exc).replace("\n", " ")
        raise DataError(
            f"{name}: cannot split {len(y)} samples with test_fraction={test_fraction!r} "
            f"({message}); choose a test_fraction that leaves every class in both splits"
        ) from exc
    if name == "iris":
        x_train, x_test = _min_max_scale(x_train, x_test)
    else:
        x_train, x_test = x_train / 16.0, x_test / 16.0
    return x_train, y_train, x_test, y_test, len(bunch.target_names)


def _min_max_scale(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both splits with the training split's range; clip the test split."""
    low = x_train.min(axis=0)
    span = x_train.max(axis=0) - low
    span[span == 0] = 1.0  # a constant feature maps to 0 instead of dividing by zero
    return (x_train - low) / span, np.clip((x_test - low) / span, 0.0, 1.0)


def _idx_directory(name: str, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    if name == "mnist":
        raise DataError(
            "mnist needs --data-dir (data_dir) pointing at a directory with the MNIST IDX files "
            f"({', '.join(IDX_FILES.values())}, plain or .gz); eqspice never downloads data"
        )
    return Path(FASHION_MNIST_DIR)


def _idx_split(name: str, directory: Path, split: str, limit: int | None) -> tuple:
    """Images flattened and divided by 255, and labels, of one IDX split."""
    images_path = _find_idx_file(name, directory, IDX_FILES[f"{split}_images"])
    labels_path = _find_idx_file(name, directory, IDX_FILES[f"{split}_labels"])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(
            f"{images_path}: images must be a 3-D array (n, rows, cols) but it has shape "
            f"{images.shape}; replace it with an IDX image file"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path}: labels must be a 1-D array but it has shape {labels.shape}; "
            "replace it with an IDX label file"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{name} {split}: {images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; the files do not belong together, replace them"
        )
    # Cut before converting, so a tiny run never builds the full float64 array.
    images, labels = images[:limit], labels[:limit]
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return x, labels.astype(np.int64)


def _find_idx_file(name: str, directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    if name == "fashion_mnist":
        fix = (
            "install Debian's dataset-fashion-mnist package (apt install dataset-fashion-mnist) "
            "or pass --data-dir pointing at the Fashion-MNIST IDX files"
        )
    else:
        fix = "pass --data-dir pointing at the directory that holds the MNIST IDX files"
    raise DataError(f"{name}: missing {directory / stem} (or {stem}.gz); {fix}")


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        message = str(exc).replace("\n", " ")
        raise DataError(f"{path}: cannot read ({message}); check the file or replace it") from exc


def _parse_idx_header(path: Path, raw: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Element type, shape and payload offset from an IDX header."""
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header; replace the file")
    magic = int.from_bytes(raw[:4], "big")
    type_code, n_dims = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or n_dims == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{magic:08X} (expected 0x0000TTDD, e.g. 0x00000803 "
            "for uint8 images); this is not an IDX file, replace it"
        )
    offset = 4 + 4 * n_dims
    if len(raw) < offset:
        raise DataError(
            f"{path}: header declares {n_dims} dimensions but the file ends after {len(raw)} "
            "bytes; the file is truncated, replace it"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">i4", count=n_dims, offset=4))
    return _IDX_DTYPES[type_code], shape, offset


def augmented(x: np.ndarray, side: int, shift_px: int, flip: bool, rng: np.random.Generator) -> np.ndarray:
    """Training images moved and mirrored at random, a new array (``x`` is not written).

    Parameters
    ----------
    x : ndarray, shape (n, side * side)
        Images, row by row, values in ``[0, 1]``.
    side : int
        Image side in pixels.
    shift_px : int
        Each image moves by ``dy, dx`` drawn uniformly from ``-shift_px..shift_px``; pixels
        moved in from outside are 0 (the background of these data sets).
    flip : bool
        Mirror each image left to right with probability 1/2.
    rng : numpy.random.Generator
        The run's generator; draws ``2 n`` integers for the shifts (if ``shift_px``),
        then ``n`` for the flips (if ``flip``), in that order.
    """
    n = len(x)
    images = x.reshape(n, side, side)
    if shift_px:
        dy, dx = rng.integers(-shift_px, shift_px + 1, size=(2, n))
    if flip:
        mirrored = rng.random(n) < 0.5
        images = np.where(mirrored[:, None, None], images[:, :, ::-1], images)
    if shift_px:
        s = shift_px
        padded = np.zeros((n, side + 2 * s, side + 2 * s), dtype=x.dtype)
        padded[:, s : s + side, s : s + side] = images
        rows = (s - dy)[:, None] + np.arange(side)  # output row r reads padded row r + s - dy
        cols = (s - dx)[:, None] + np.arange(side)
        images = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return np.ascontiguousarray(images.reshape(n, side * side))
