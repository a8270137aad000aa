"""Fetching the four dataset files from mirrors into a local folder, verified by checksum.

Designed to fail fast: a machine without internet must get the "use local files" message within
seconds, not after minutes of retries (as TFDS's downloader does). So every request has a short
timeout, each mirror is tried once, and the first file that no mirror can deliver ends the attempt.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from mnist_jax.data.catalog import FILE_STEMS, DatasetSpec
from mnist_jax.errors import DataError
from mnist_jax.fileio import make_folder, write_bytes_atomic

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0  # per connect and per read; MNIST's largest file is 9.9 MB
_CHUNK = 1 << 20


class DownloadFailed(Exception):
    """No mirror could deliver a file (network trouble, not bad content); holds what was tried."""

    def __init__(self, attempts: list[str]):
        super().__init__("; ".join(attempts))
        self.attempts = attempts


def download_dataset(spec: DatasetSpec, dest: Path, *, timeout: float = TIMEOUT_S) -> None:
    """Download the `.gz` files of `spec` that `dest` lacks, verifying each one.

    Raises `DownloadFailed` when a file could not be fetched from any mirror, and `DataError` when a
    mirror delivered content whose decompressed SHA-256 differs from the catalog's (the file is
    deleted, never left in `dest`).
    """
    if not spec.downloadable:
        raise DownloadFailed([f"{spec.name} has no verified download"])
    make_folder(dest)
    for stem in FILE_STEMS:
        if (dest / stem).is_file() or (dest / f"{stem}.gz").is_file():
            continue  # kept from an earlier, interrupted download; verified when read
        _download_one(spec, stem, dest, timeout)


def _download_one(spec: DatasetSpec, stem: str, dest: Path, timeout: float) -> None:
    """Fetch `stem.gz` from the first mirror that delivers it; keep it only if its checksum holds.

    The file is read into memory (MNIST's largest is 9.9 MB) and verified there, so a bad or
    partial download never reaches `dest`; `fileio` then writes it atomically, and a write that
    fails (disk full, read-only cache) is an `OutputError`, not a network failure to retry.
    """
    attempts: list[str] = []
    bad_content: list[str] = []
    for mirror in spec.mirrors:
        url = f"{mirror}{stem}.gz"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                chunks = []
                while chunk := response.read(_CHUNK):
                    chunks.append(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            # URLError covers DNS failures and refused connections; socket timeouts are OSErrors.
            reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            attempts.append(f"{url} ({reason})")
            continue
        data = b"".join(chunks)
        problem = _verify(data, spec.sha256[stem])
        if problem is None:
            write_bytes_atomic(dest / f"{stem}.gz", data)  # readers never see a partial file
            return
        bad_content.append(f"{url}: {problem}")
    if bad_content:
        raise DataError(
            f"downloaded {stem}.gz for {spec.name} but its content is wrong "
            f"({'; '.join(bad_content)}); nothing was kept in {dest}. Download the files by hand "
            "and pass --data-dir FOLDER."
        )
    raise DownloadFailed(attempts)


def _verify(gz_data: bytes, expected_sha256: str) -> str | None:
    """None if `gz_data` decompresses to content with the expected SHA-256, else what is wrong."""
    try:
        data = gzip.decompress(gz_data)
    except (OSError, EOFError, zlib.error) as e:
        return f"not a valid gzip file ({e})"
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        return f"SHA-256 of the decompressed file is {actual}, expected {expected_sha256}"
    return None
