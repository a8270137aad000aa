"""The in-memory dataset, its validation, and the pure numpy preprocessing the models need.

Arrays stay uint8 in the `Dataset` (47 MB for MNIST instead of 188 MB as float32); conversion to
float happens once, in `flatten_and_scale`, where the training code decides it.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from mnist_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test dataset of grayscale images with integer class labels. The arrays may be
    read-only views of the file contents (`read_idx`): copy before modifying them in place."""

    name: str
    train_images: np.ndarray  # uint8 (N, H, W)
    train_labels: np.ndarray  # uint8 (N,)
    test_images: np.ndarray  # uint8 (M, H, W)
    test_labels: np.ndarray  # uint8 (M,)
    num_classes: int
    fingerprint: str  # hex SHA-256 identifying the content, see `fingerprint_of`
    source: str  # a directory path, or 'tfds:NAME@DATA_DIR'
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[1:])

    def __repr__(self) -> str:  # the default repr would print four large arrays
        return (
            f"Dataset(name={self.name!r}, train={self.train_images.shape}, "
            f"test={self.test_images.shape}, num_classes={self.num_classes}, "
            f"fingerprint={self.fingerprint[:12]}..., source={self.source!r})"
        )


def fingerprint_of(file_sha256s: list[str] | tuple[str, ...]) -> str:
    """SHA-256 over the SHA-256s of a dataset's four decompressed IDX files (in `FILE_STEMS`
    order): free to compute while reading, and the same whether the files are gzip or raw."""
    return hashlib.sha256("\n".join(file_sha256s).encode()).hexdigest()


def check_split(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str) -> None:
    """Check one split's arrays; `images_name`/`labels_name` (file paths) go into the messages."""
    if images.ndim == 4 and images.dtype == np.uint8:
        raise DataError(
            f"{images_name}: holds colour images of shape {images.shape} (N, height, width, "
            "channels); the models here take greyscale images (N, height, width): convert them "
            "first, e.g. average the channels"
        )
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_name}: expected uint8 images of shape (N, height, width), got {images.dtype} "
            f"of shape {images.shape}; is this the right file?"
        )
    if 0 in images.shape[1:]:
        raise DataError(
            f"{images_name}: its images are {images.shape[1]}x{images.shape[2]} pixels: empty; "
            "is this the right file?"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise DataError(
            f"{labels_name}: expected a 1-D array of integer labels, got {labels.dtype} of shape "
            f"{labels.shape}; is this the right file?"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_name} holds {len(images)} images but {labels_name} holds {len(labels)} "
            "labels; the two files belong to different datasets or one is damaged."
        )


# At most this many classes: the `Dataset` keeps labels as uint8, the type of IDX label files.
MAX_CLASSES = 256


def _some_labels(faulty: np.ndarray, total: int, verbs=("is", "are"), limit: int = 5) -> str:
    """'label 200 (1 of 60000 examples) is' or 'labels 1, 2, 3 (18000 of 60000 examples) are', of
    the labels at fault among `total`; `verbs` singular and plural."""
    values = np.unique(faulty)
    shown = ", ".join(str(int(v)) for v in values[:limit])
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    plural = len(values) > 1
    return (
        f"label{'s' if plural else ''} {shown}{more} ({faulty.size} of {total} examples) "
        f"{verbs[plural]}"
    )


def _ranges(classes: np.ndarray, limit: int = 5) -> str:
    """Sorted integers as runs: [11, 12, 13, 40] -> '11..13, 40'; at most `limit` runs shown."""
    runs, start = [], 0
    for i in range(1, len(classes) + 1):
        if i == len(classes) or classes[i] != classes[i - 1] + 1:
            first, last = int(classes[start]), int(classes[i - 1])
            runs.append(str(first) if first == last else f"{first}..{last}")
            start = i
    return ", ".join(runs[:limit]) + (", ..." if len(runs) > limit else "")


def check_labels(labels: np.ndarray, num_classes: int, labels_name: str) -> np.ndarray:
    """Check labels lie in [0, num_classes) and return them as uint8."""
    labels = np.asarray(labels)
    outside = (labels < 0) | (labels >= num_classes)
    if outside.any():
        raise DataError(
            f"{labels_name}: {_some_labels(labels[outside], labels.size)} outside "
            f"0..{num_classes - 1} for {num_classes} classes; the file is damaged or belongs to "
            "another dataset."
        )
    return labels.astype(np.uint8, copy=False)


def infer_num_classes(train_labels: np.ndarray, labels_name: str) -> int:
    """The class count K of a dataset that names no classes (the catalog's and TFDS's do): the
    classes are 0..K-1 with K = the largest training label + 1, each with a training example,
    2 <= K <= MAX_CLASSES. Anything else is a `DataError` naming the labels at fault: a gap is a
    stray or damaged label (one 200 among the digits would make 190 classes that never occur) or
    labels counted from 1, and a class without a training example cannot be learned."""
    labels = np.asarray(train_labels)
    if labels.size and int(labels.min()) < 0:
        raise DataError(
            f"{labels_name}: {_some_labels(labels[labels < 0], labels.size)} negative; "
            "class labels are 0, 1, 2, ...; the file is damaged or is not a labels file."
        )
    if labels.size and int(labels.max()) >= MAX_CLASSES:
        raise DataError(
            f"{labels_name}: {_some_labels(labels[labels >= MAX_CLASSES], labels.size)} above "
            f"{MAX_CLASSES - 1}: at most {MAX_CLASSES} classes are supported (labels are uint8); "
            "the file is damaged or is not a labels file."
        )
    counts = np.bincount(labels.astype(np.int64), minlength=1)
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        num_classes = len(counts)
        stray = _some_labels(labels[labels > missing[0]], labels.size, ("lies", "lie"))
        gap = f"{missing.size} class{'es' if missing.size > 1 else ''} without any"
        hint = ": are the labels counted from 1?" if missing.tolist() == [0] else ""
        raise DataError(
            f"{labels_name}: the labels must number the classes 0..K-1, each with training "
            f"examples, but {stray} beyond {gap} ({_ranges(missing)}{hint}), which would make "
            f"{num_classes} classes; the file is damaged or holds stray labels."
        )
    if len(counts) < 2:  # one class: a model "learns" it at 100% and a zero gradient
        raise DataError(
            f"{labels_name}: every training label is 0, one class: classification needs at "
            "least two; the file is damaged or is not this dataset's labels file."
        )
    return len(counts)


def make_dataset(
    name: str,
    arrays: dict[str, np.ndarray],
    names: dict[str, str],
    *,
    fingerprint: str,
    source: str,
    class_names: tuple[str, ...] | None,
) -> Dataset:
    """Validate the four arrays (keyed 'train_images', ..., 'test_labels'; `names` calls each in
    messages, by its file path) and build a `Dataset`. Without `class_names` the class count comes
    from the training labels (`infer_num_classes`) and the classes are named '0', '1', ..."""
    for split in ("train", "test"):
        keys = (f"{split}_images", f"{split}_labels")
        check_split(*(arrays[k] for k in keys), *(names[k] for k in keys))
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"{names['train_images']} holds images of shape {arrays['train_images'].shape[1:]} but "
            f"{names['test_images']} of shape {arrays['test_images'].shape[1:]}; both must come "
            "from one dataset."
        )
    if len(arrays["train_images"]) == 0:
        raise DataError(f"{names['train_images']}: holds no images; replace it with the real file.")
    if class_names is None:
        num_classes = infer_num_classes(arrays["train_labels"], names["train_labels"])
        class_names = tuple(str(i) for i in range(num_classes))
    num_classes = len(class_names)
    labels = {
        s: check_labels(arrays[f"{s}_labels"], num_classes, names[f"{s}_labels"])
        for s in ("train", "test")
    }
    return Dataset(
        name=name,
        train_images=arrays["train_images"],
        train_labels=labels["train"],
        test_images=arrays["test_images"],
        test_labels=labels["test"],
        num_classes=num_classes,
        fingerprint=fingerprint,
        source=source,
        class_names=tuple(class_names),
    )


# Preprocessing: pure numpy, no JAX (the caller moves results to the device once).


def scale_to_layout(images: np.ndarray, example_shape: tuple[int, ...]) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 `(N, *example_shape)` in [0, 1], dividing by 255 as the
    Keras notebook does; `example_shape` is the model's layout of one image, (H*W,) flat or
    (H, W, 1) (a reshape of the same values, no copy)."""
    images = np.asarray(images)
    scaled = images.reshape(len(images), *example_shape).astype(np.float32)
    scaled /= np.float32(255.0)  # in place: one float32 buffer, not two
    return scaled


def flatten_and_scale(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W) -> float32 (N, H*W) in [0, 1]: the MLP's layout."""
    images = np.asarray(images)
    return scale_to_layout(images, (int(np.prod(images.shape[1:])),))


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot (N, num_classes); ValueError for labels out of
    range."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}"
        )
    out = np.zeros((labels.shape[0], num_classes), dtype=np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def holdout_split(
    images: np.ndarray, labels: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_images, train_labels, val_images, val_labels), views: the LAST `size` examples held
    out, as Keras's `validation_split` (before any shuffling), so a run validates on the notebook's
    examples. `size` outside 1..N-1 is a `ConfigError` (a ValueError: it usually comes from a flag).
    """
    n = len(images)
    if len(labels) != n:
        raise ValueError(f"images and labels differ in length: {n} vs {len(labels)}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= n - 1:
        raise ConfigError(
            f"holdout size must be an integer in 1..{n - 1} for {n} examples, got {size!r}"
        )
    cut = n - int(size)
    return images[:cut], labels[:cut], images[cut:], labels[cut:]
