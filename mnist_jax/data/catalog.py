"""The datasets this project knows by name: class names, content checksums, download mirrors.

A checksum is listed only if computed here from a trusted copy; without one, a dataset is never
downloaded and must be provided locally. Checksums are SHA-256 of the DECOMPRESSED files: the gzip
wrapping differs between mirrors and packagers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

# The four files of every MNIST-like dataset, in the fingerprint's order, each with or without .gz.
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILE_STEMS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

DIGITS = tuple(str(i) for i in range(10))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What is known about a named dataset: its decompressed files' SHA-256 by stem (None: not
    verified here), and base URLs (ending in '/') serving '<stem>.gz', used only with them."""

    name: str
    class_names: tuple[str, ...]
    sha256: Mapping[str, str] | None = None
    mirrors: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def downloadable(self) -> bool:
        return bool(self.mirrors) and self.sha256 is not None


MNIST = DatasetSpec(
    name="mnist",
    class_names=DIGITS,
    # From /work/shared/data/mnist/README.md, re-computed from the files there.
    sha256=MappingProxyType(
        {
            TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        }
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
)

FASHION_MNIST = DatasetSpec(
    name="fashion_mnist",
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    # Computed here (`zcat FILE | sha256sum`) from Debian's package dataset-fashion-mnist
    # 0.0~git20200523.55506a9-1, /usr/share/datasets/fashion-mnist/. Debian recompressed the .gz
    # files (their MD5s differ from the upstream README's), hence checksums of decompressed content.
    sha256=MappingProxyType(
        {
            TRAIN_IMAGES: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            TRAIN_LABELS: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            TEST_IMAGES: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            TEST_LABELS: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        }
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)

# KMNIST (Kuzushiji-MNIST, Clanuwat et al. 2018), class names as in its classmap and in TFDS. No
# trusted copy could be reached from here to compute checksums: it loads only from folders that
# name it (`sources`) or from 'tfds:kmnist', and is never downloaded.
KMNIST = DatasetSpec(
    name="kmnist",
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
)

# Read-only, so that one caller cannot change what another sees (tests monkeypatch a new one).
KNOWN_DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {spec.name: spec for spec in (MNIST, FASHION_MNIST, KMNIST)}
)


def lookup(name: str) -> DatasetSpec | None:
    """The spec of a known dataset, or None for any other (IDX) dataset name."""
    return KNOWN_DATASETS.get(name)
