"""Fetching the four dataset files from mirrors into a local folder, verified by checksum.

Fast to fail, so that a machine without internet gets the "use local files" message in seconds (not
after TFDS's minutes of retries): short timeouts, each mirror tried once, and the first file no
mirror delivers ends the attempt.
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


class DownloadFailed(Exception):
    """No mirror could deliver a file (network trouble, not bad content); holds what was tried."""

    def __init__(self, attempts: list[str]):
        super().__init__("; ".join(attempts))
        self.attempts = attempts


def download_dataset(spec: DatasetSpec, dest: Path, *, timeout: float = TIMEOUT_S) -> None:
    """Download the `.gz` files of `spec` that `dest` lacks: `DownloadFailed` when no mirror
    delivers a file, `DataError` when one delivered the wrong content (never kept in `dest`)."""
    if not spec.downloadable:
        raise DownloadFailed([f"{spec.name} has no verified download"])
    make_folder(dest)
    for stem in FILE_STEMS:
        if (dest / stem).is_file() or (dest / f"{stem}.gz").is_file():
            continue  # kept from an earlier, interrupted download; verified when read
        _download_one(spec, stem, dest, timeout)


def _download_one(spec: DatasetSpec, stem: str, dest: Path, timeout: float) -> None:
    """Fetch `stem.gz` from the first mirror that delivers it, verified in memory (the largest is
    9.9 MB) so that a bad or partial download never reaches `dest`."""
    attempts: list[str] = []
    bad_content: list[str] = []
    for mirror in spec.mirrors:
        url = f"{mirror}{stem}.gz"
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            # URLError covers DNS failures and refused connections; socket timeouts are OSErrors.
            reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", e)
            attempts.append(f"{url} ({reason})")
            continue
        problem = _verify(data, spec.sha256[stem])
        if problem is None:
            write_bytes_atomic(dest / f"{stem}.gz", data)
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
