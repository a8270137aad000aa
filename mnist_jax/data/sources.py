"""Where dataset files come from: `load_dataset` and its resolution order.

1. `data_dir`, if given, and nowhere else (a silent fall-back to another copy would hide mistakes).
2. `$MNIST_JAX_DATA/<name>/`, else the four files directly in `$MNIST_JAX_DATA`.
3. The per-user cache: `$XDG_CACHE_HOME/mnist_jax/<name>`, else `~/.cache/mnist_jax/<name>`.
4. If `download` and the dataset has verified checksums: download into the cache, then read.

`tfds:NAME` is read through tensorflow-datasets instead (`tfds_source`).

A known dataset is checked against its checksums. One without (kmnist, or a name the catalog does
not know) is read only from a folder that names it, never from the files directly in
`$MNIST_JAX_DATA` (usually MNIST): a typo (`--dataset fashion_mnst`) would train on those and
record the typo. Files with exactly another known dataset's checksums are refused under any other
name, wherever they are.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mnist_jax.data import catalog
from mnist_jax.data.catalog import FILE_STEMS
from mnist_jax.data.dataset import Dataset, fingerprint_of, make_dataset
from mnist_jax.data.download import DownloadFailed, download_dataset
from mnist_jax.data.idx import parse_idx, read_idx_bytes
from mnist_jax.errors import DataError

ENV_VAR = "MNIST_JAX_DATA"
TFDS_PREFIX = "tfds:"

_ROLE_BY_STEM = dict(
    zip(FILE_STEMS, ("train_images", "train_labels", "test_images", "test_labels"))
)


def load_dataset(
    name: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Load a dataset by name from the first place that has it (see the module docstring):
    'mnist', 'fashion_mnist', 'kmnist', another IDX dataset's name (in `data_dir` or a folder named
    after it), or 'tfds:NAME' (`data_dir` is then the TFDS data dir). `cache_dir` replaces
    ~/.cache/mnist_jax. A `DataError` says how to provide the files."""
    if name.startswith(TFDS_PREFIX):
        from mnist_jax.data.tfds_source import load_tfds  # lazy: TFDS is an optional extra

        return load_tfds(name[len(TFDS_PREFIX) :], data_dir=data_dir)
    if not name or os.sep in name or name in (".", ".."):
        raise DataError(
            f"invalid dataset name {name!r}; use e.g. mnist, fashion_mnist, kmnist or tfds:mnist."
        )

    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise DataError(
                f"--data-dir {data_dir} is not a directory; pass the folder holding the four "
                "*-ubyte(.gz) files."
            )
        missing = [stem for stem in FILE_STEMS if find_file(data_dir, stem) is None]
        if missing:
            raise DataError(
                f"{data_dir} lacks {', '.join(f'{m}[.gz]' for m in missing)}; put the four files "
                f"{', '.join(FILE_STEMS)} (each optionally .gz) there."
            )
        return read_dataset_dir(data_dir, name)

    spec = catalog.lookup(name)
    tried: list[str] = []
    for folder in _local_candidates(name, cache_dir):
        if isinstance(folder, Path) and all(
            find_file(folder, stem) is not None for stem in FILE_STEMS
        ):
            return read_dataset_dir(
                folder, name, from_cache=folder == cache_folder(name, cache_dir)
            )
        tried.append(str(folder))

    if download and spec is not None and spec.downloadable:
        dest = cache_folder(name, cache_dir)
        try:
            download_dataset(spec, dest)
        except DownloadFailed as e:
            tried.extend(e.attempts)
        else:
            return read_dataset_dir(dest, name, from_cache=True)
    elif spec is not None and spec.downloadable:
        tried.append("download (disabled)")
    elif spec is not None:
        tried.append(f"download (none: no verified checksums for {name!r})")

    if spec is None:
        raise DataError(
            f"unknown dataset {name!r}: the known names are {', '.join(catalog.KNOWN_DATASETS)} "
            f"and tfds:NAME; a dataset of your own needs --data-dir FOLDER or its four files in "
            f"${ENV_VAR}/{name}/ (tried: {'; '.join(tried)})."
        )
    where = f"set {ENV_VAR}=FOLDER" if _verifiable(spec) else f"put them in ${ENV_VAR}/{name}/"
    raise DataError(
        f"{name} not found: put the four *-ubyte.gz files in a folder and pass --data-dir FOLDER "
        f"or {where} (tried: {'; '.join(tried)})."
    )


def _verifiable(spec: catalog.DatasetSpec | None) -> bool:
    """Whether files claimed to be this dataset can be checked (it has checksums)."""
    return spec is not None and spec.sha256 is not None


def cache_folder(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """`<root>/<name>`, the root `cache_dir`, else `$XDG_CACHE_HOME/mnist_jax`, else
    `~/.cache/mnist_jax`."""
    if cache_dir is not None:
        root = Path(cache_dir).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "mnist_jax"
    return root / name


def _local_candidates(name: str, cache_dir) -> list[Path | str]:
    """Folders to look in, in order: env subfolder, env folder, cache folder; for a dataset
    without checksums, a note (for the error message) in place of the env folder."""
    folders: list[Path | str] = []
    env = os.environ.get(ENV_VAR)
    if env:
        env_dir = Path(env).expanduser()
        folders.append(env_dir / name)
        if _verifiable(catalog.lookup(name)):
            folders.append(env_dir)
        else:
            folders.append(
                f"{env_dir} itself (not for {name}: without checksums, only a folder named "
                f"{name} is read)"
            )
    folders.append(cache_folder(name, cache_dir))
    return folders


def find_file(folder: Path, stem: str) -> Path | None:
    """`folder/stem.gz` or `folder/stem`, whichever exists (.gz preferred: it is the usual form)."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def read_dataset_dir(folder: str | os.PathLike, name: str, *, from_cache: bool = False) -> Dataset:
    """Read and validate the four IDX files in `folder` as dataset `name`, checked against its
    checksums where it has some (their SHA-256s also give the fingerprint)."""
    folder = Path(folder)
    spec = catalog.lookup(name)
    arrays, names, hashes = {}, {}, []
    for stem in FILE_STEMS:
        path = find_file(folder, stem)
        if path is None:
            raise DataError(
                f"{folder} lacks {stem}[.gz]; put the four files {', '.join(FILE_STEMS)} there."
            )
        data = read_idx_bytes(path)
        array = parse_idx(data, path)  # first, so a damaged file is reported as damaged
        digest = hashlib.sha256(data).hexdigest()
        if _verifiable(spec) and digest != spec.sha256[stem]:
            owners = [
                other.name
                for other in catalog.KNOWN_DATASETS.values()
                if _verifiable(other) and other.sha256[stem] == digest
            ]
            owner = f": it is {owners[0]}'s" if owners else ""
            hint = f" If this is the download cache, delete {folder} to download again."
            raise DataError(
                f"files in {folder} are not {name} (checksum of {stem} differs{owner}); pass the "
                f"right --dataset or --data-dir.{hint if from_cache else ''}"
            )
        arrays[_ROLE_BY_STEM[stem]], names[_ROLE_BY_STEM[stem]] = array, str(path)
        hashes.append(digest)
    if not _verifiable(spec):
        for other in catalog.KNOWN_DATASETS.values():
            if _verifiable(other) and [other.sha256[stem] for stem in FILE_STEMS] == hashes:
                raise DataError(
                    f"files in {folder} are {other.name} (all four checksums match), not {name}; "
                    f"the dataset to name is {other.name}."
                )
    class_names = spec.class_names if spec is not None else None
    return make_dataset(
        name,
        arrays,
        names,
        fingerprint=fingerprint_of(hashes),
        source=str(folder),
        class_names=class_names,
    )
