"""Reading an ``.npz`` archive that nobody vouches for, with memory bounded before anything is loaded.

``numpy.load`` allocates what a member's ``.npy`` header declares and decompresses whatever the zip
holds, so a few kilobytes can ask for hundreds of gigabytes. Here the zip directory and every
member's header are read first (names, declared uncompressed sizes, shapes, dtypes), the caller
checks them against what it expects, and only then are the arrays read — never a pickled object.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from rfmml.runtime.errors import ArtifactError

NPY_MAGIC = b"\x93NUMPY"
# what can go wrong reading a damaged archive or member (zipfile raises RuntimeError for an encrypted
# member and NotImplementedError for an unknown compression method)
_READ_ERRORS = (
    zlib.error,
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    RuntimeError,
    NotImplementedError,
)


class NpyHeader(NamedTuple):
    """What a member's ``.npy`` header declares: shape, dtype and its byte count."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int

    @property
    def size(self) -> int:
        """Number of elements (a Python int: no overflow for absurd shapes)."""
        return math.prod(self.shape)


def read_npz(
    path: str | Path,
    *,
    allowed_keys: Collection[str],
    check_headers: Callable[[dict[str, NpyHeader]], None],
    max_member_bytes: int,
    what: str,
) -> dict[str, np.ndarray]:
    """The arrays of the ``.npz`` at ``path``, read only after every check passed.

    Refused with one ``ArtifactError`` line naming ``path`` (``what`` says what the file should be):
    not a zip archive, a member that is not ``<key>.npy`` or whose key is not in ``allowed_keys``, a
    member whose uncompressed size in the zip directory exceeds ``max_member_bytes`` or differs from
    what its header declares, an object (pickled) dtype, and whatever ``check_headers`` (given
    {key: NpyHeader} of every member) raises. Nothing is decompressed beyond the headers until then.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = _members(archive, path, allowed_keys, max_member_bytes, what)
            headers = {key: _member_header(archive, info, path, key) for key, info in members.items()}
            check_headers(headers)
            return {key: _member_array(archive, info) for key, info in members.items()}
    except ArtifactError:
        raise
    except zipfile.BadZipFile as error:
        if _starts_with(path, NPY_MAGIC):
            raise ArtifactError(f"{path}: not a valid {what} (a single array, not an .npz archive)") from None
        raise ArtifactError(f"{path}: not a readable {what} ({error})") from None
    except _READ_ERRORS as error:
        raise ArtifactError(f"{path}: not a readable {what} ({type(error).__name__}: {error})") from None


def _members(
    archive: zipfile.ZipFile, path: Path, allowed_keys: Collection[str], max_member_bytes: int, what: str
) -> dict[str, zipfile.ZipInfo]:
    """{key: zip entry}, from the zip directory alone (nothing decompressed)."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        key = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else None
        if key is None or key not in allowed_keys:
            raise ArtifactError(
                f"{path}: unexpected member {info.filename!r} (a valid {what} holds only "
                f"{', '.join(sorted(allowed_keys))})"
            )
        if key in members:
            raise ArtifactError(f"{path}: member {info.filename!r} appears twice")
        if info.file_size > max_member_bytes:
            raise ArtifactError(
                f"{path}: member {key!r} declares {info.file_size} bytes uncompressed "
                f"(more than the {max_member_bytes} any {what} needs)"
            )
        members[key] = info
    return members


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str) -> NpyHeader:
    """Read only the ``.npy`` header of one member; refuse object dtypes and size mismatches."""
    with archive.open(info) as stream:
        shape, dtype = _read_header(stream)
        header_bytes = stream.tell()
    if any(n < 0 for n in shape):
        raise ArtifactError(f"{path}: {key!r} declares the shape {shape}")
    if dtype.hasobject:
        raise ArtifactError(f"{path}: {key!r} holds pickled Python objects (refused: plain arrays only)")
    header = NpyHeader(tuple(int(n) for n in shape), dtype, math.prod(shape) * dtype.itemsize)
    if header_bytes + header.nbytes != info.file_size:
        raise ArtifactError(
            f"{path}: {key!r} declares {header.shape} {dtype} ({header.nbytes} bytes) but its member "
            f"holds {info.file_size - header_bytes} bytes of data"
        )
    return header


def _read_header(stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return shape, dtype


def _member_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with archive.open(info) as stream:
        return npy_format.read_array(stream, allow_pickle=False)


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic
