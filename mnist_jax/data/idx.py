"""Reading and writing the IDX format of the MNIST family of datasets.

IDX (http://yann.lecun.com/exdb/mnist/, "file formats") is a tiny header followed by one
big-endian array:

    bytes 0-1   zero
    byte  2     dtype code (0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double)
    byte  3     number of dimensions, ndim
    then        ndim sizes, each a big-endian uint32
    then        the data, prod(sizes) items, row-major

Whether a file is gzip is decided by its first two bytes (1f 8b), never by its name: mirrors and
package managers rename and recompress these files. Every problem a user can fix (a truncated
download, the wrong file, a corrupt archive) is a `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from mnist_jax.errors import DataError
from mnist_jax.fileio import write_bytes_atomic

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> numpy dtype. IDX stores multi-byte numbers big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_BY_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

# Labels have 1 dimension, images 3 (N, H, W); a header declaring more than 4 is damaged. 2 and 4
# (colour images) pass, so that `dataset.check_split` can say which shape it expected.
MAX_NDIM = 4


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The decompressed content of an IDX file (gzip or raw), apart from parsing so that callers
    hash the bytes they parse. No more data than the header declares is read: a file far larger
    than memory, or a gzip bomb, is refused without being read."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            if file.read(2) != GZIP_MAGIC:
                file.seek(0)
                return _read_content(file, path, size=os.fstat(file.fileno()).st_size)
            file.seek(0)
            try:
                with gzip.GzipFile(fileobj=file) as stream:
                    return _read_content(stream, path)
            except (OSError, EOFError, zlib.error) as e:
                # BadGzipFile is an OSError; a cut-off download ends in EOFError.
                raise DataError(
                    f"{path}: corrupt or truncated gzip file ({e}); delete it and download or copy "
                    "it again."
                ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the path or the dataset folder.") from None
    except OSError as e:
        raise DataError(
            f"{path}: cannot be read ({e.strerror or e}); check its permissions."
        ) from None


def _read_content(stream, path: Path, size: int | None = None) -> bytes:
    """An IDX header, then its data, from `stream`: a raw file of `size` bytes, checked against
    the header before it is read, or gzip, of which one byte more than declared is read (enough to
    tell that there is too much)."""
    head = stream.read(4)
    if len(head) == 4:
        head += stream.read(4 * head[3])
    _, shape, header_len, declared = _parse_header(head, path)
    if size is not None:
        _check_size(path, shape, declared, size - header_len)
    stream.seek(0)
    try:
        data = stream.read(header_len + declared + 1)
    except (MemoryError, OverflowError):  # OverflowError: more bytes than a C ssize_t can count
        raise DataError(
            f"{path}: its IDX header declares shape {shape} ({declared} data bytes), more than "
            "fits in memory; the file is damaged or not a dataset file."
        ) from None
    _check_size(path, shape, declared, len(data) - header_len, exact=size is not None)
    return data


def _parse_header(data: bytes, path) -> tuple[np.dtype, tuple[int, ...], int, int]:
    """(dtype, shape, header bytes, data bytes declared) of the IDX header starting `data`."""
    if len(data) < 4:
        raise DataError(
            f"{path}: not an IDX file (only {len(data)} bytes); replace it with a complete copy."
        )
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (bad magic number, starts with {data[:4]!r}, expected 00 00 "
            "then dtype and ndim bytes); check that this is a *-ubyte file and not, e.g., an HTML "
            "error page."
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(
            f"{path}: unknown IDX dtype code 0x{code:02x} (known: "
            f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)}); the file is damaged or not IDX."
        )
    if ndim == 0:
        raise DataError(
            f"{path}: IDX header declares 0 dimensions; the file is damaged or not IDX."
        )
    if ndim > MAX_NDIM:
        raise DataError(
            f"{path}: IDX header declares {ndim} dimensions, but dataset files have 1 (labels), "
            "3 (images) or 4 (colour images); the file is damaged or not a dataset file."
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes, {header_len} needed for {ndim} "
            "dimensions); replace it with a complete copy."
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    # Python ints: a crafted header cannot wrap.
    return dtype, shape, header_len, math.prod(shape) * dtype.itemsize


def _check_size(path, shape: tuple[int, ...], declared: int, actual: int, exact: bool = True):
    """Refuse `actual` data bytes where the header declares `declared` (`exact` False: reading
    stopped one byte past it, so the excess is unknown)."""
    if actual < declared:
        raise DataError(
            f"{path}: truncated IDX file: header promises shape {shape} ({declared} data bytes) "
            f"but only {actual} follow; download or copy the file again."
        )
    if actual > declared:
        excess = f"{actual - declared} unexpected trailing bytes" if exact else "trailing bytes"
        follow = f"{actual} follow" if exact else "more follow"
        raise DataError(
            f"{path}: {excess} after the IDX data of shape {shape} (the header declares "
            f"{declared} data bytes, {follow}); the file is damaged or was concatenated with "
            "another; replace it."
        )


def parse_idx(data: bytes, path: str | os.PathLike = "<bytes>") -> np.ndarray:
    """Decompressed IDX bytes as an array in native byte order; for ubyte files (all of MNIST) a
    read-only view of `data`, no copy. `path` is for error messages."""
    dtype, shape, header_len, declared = _parse_header(data, path)
    _check_size(path, shape, declared, len(data) - header_len)
    array = np.frombuffer(data, dtype=dtype, count=declared // dtype.itemsize, offset=header_len)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))  # native order for fast arithmetic
    return array.reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a numpy array; `DataError` naming the file if bad."""
    return parse_idx(read_idx_bytes(path), path)


def idx_bytes(array: np.ndarray) -> bytes:
    """An array as uncompressed IDX bytes: also its canonical form, whose SHA-256 is the
    decompressed file's, so datasets not read from IDX files share the fingerprint scheme."""
    array = np.asarray(array)
    code = _CODE_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 or "
            "float64"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got an array of shape {array.shape}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write `array` as an IDX file, atomically (`mnist_jax.fileio`); gzip it if `compress`, or
    (if None) if the name ends in '.gz'."""
    path = Path(path)
    data = idx_bytes(array)
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)  # mtime=0: reproducible bytes
    return write_bytes_atomic(path, data)
