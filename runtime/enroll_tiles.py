"""The tiles of a class to enrol: read, checked and digested with the runtime alone.

A class's tiles come as a folder (every image file under it, recursively, in sorted order: the
listing of ``rfmml-infer``), one image file, a sequence of them, or uint8 RGB pixels [N, H, W, 3].
Files are decoded by :func:`rfmml.runtime.imageio.load_tile` (the decode and resize of training and
inference); the classifier's onnxruntime session embeds them (``rfmml.runtime.enroll``). Any image
file that cannot be decoded stops the enrolment (every such file named in one line): a prototype from
fewer tiles than the user chose, recorded as if complete, would mislead an audit.

The digest recorded for the tiles (:func:`tiles_digest`) is the sha256 of the sorted sha256 hex
digests of the tiles, one per line: of each file's bytes (what ``sha256sum`` prints), or of each
image's uint8 pixel bytes when pixels are given. It does not depend on the tiles' names or order.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfmml.runtime.artifact import sha256_file
from rfmml.runtime.errors import InputError
from rfmml.runtime.folder import decode_tile, list_files
from rfmml.runtime.imageio import IMAGE_SUFFIXES
from rfmml.runtime.output_files import path_text

# what ``images`` may be: a folder, image files, or uint8 pixels [N, H, W, 3] / [H, W, 3]
ImageSource = str | Path | Sequence[str | Path] | np.ndarray
MAX_TILES = 100_000  # tiles per class: enrolment is for a handful; this bounds memory


@dataclass(frozen=True)
class ClassTiles:
    """The tiles of one class: pixels uint8 [N, H, W, 3] (the model's input size), ``sha256`` their
    digest (:func:`tiles_digest`), ``source`` a printable name for messages."""

    pixels: np.ndarray
    sha256: str
    source: str

    @property
    def count(self) -> int:
        return int(self.pixels.shape[0])


def tiles_digest(tile_digests: Iterable[str]) -> str:
    """sha256 hex of the sorted per-tile sha256 hex digests, one per line."""
    return hashlib.sha256("".join(f"{d}\n" for d in sorted(tile_digests)).encode("ascii")).hexdigest()


def mean_prototype(embeddings: np.ndarray) -> np.ndarray:
    """The prototype of a class: the mean of its embeddings float32 [N, D] -> float32 [D].

    Computed exactly as export's prototypes (``rfmml.trainer.heads.fit_prototypes``): summed in
    float32 in tile order, then divided by the count in float32, so a class enrolled from the same
    embeddings has bit for bit the prototype export would have given it."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"expected embeddings [N >= 1, D], got {embeddings.shape}")
    total = np.zeros(embeddings.shape[1], dtype=np.float32)
    for row in embeddings:  # one float32 addition per tile and element, in order (torch's index_add_)
        total += row
    return total / np.float32(embeddings.shape[0])


def read_tiles(images: ImageSource, size: tuple[int, int]) -> ClassTiles:
    """The tiles of ``images`` at ``size`` = (H, W); InputError (one line) for a missing or empty
    folder, a missing file, unreadable image files (each named), or pixels that are not uint8 RGB."""
    if isinstance(images, np.ndarray):
        return _pixel_tiles(images)
    if isinstance(images, (str, Path)):
        one = Path(images)
        return _file_tiles([one] if one.is_file() else _folder_images(one), size, path_text(one))
    paths = [Path(p) for p in images]
    missing = [path_text(p) for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"tile file(s) not found: {', '.join(missing)}")
    return _file_tiles(paths, size, f"{len(paths)} file(s)")


def _folder_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` (non-image files ignored with a one-line warning)."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "not found"
        raise InputError(f"tile folder {what}: {path_text(folder)}")
    images, others = list_files(folder)
    if not images:
        raise InputError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {path_text(folder)}: a class needs "
            "at least one tile"
        )
    if others:
        shown = ", ".join(path_text(p.relative_to(folder)) for p in others[:5])
        warnings.warn(
            f"{path_text(folder)}: {len(others)} non-image file(s) ignored: {shown}"
            + (" ..." if len(others) > 5 else ""),
            stacklevel=3,
        )
    return images


def _file_tiles(paths: list[Path], size: tuple[int, int], source: str) -> ClassTiles:
    if not paths:
        raise InputError("no tiles given: a class needs at least one tile")
    if len(paths) > MAX_TILES:
        raise InputError(f"{source}: {len(paths)} tiles, more than the {MAX_TILES} one class may take")
    decoded = [decode_tile(path, size) for path in paths]
    failed = [(p, o) for p, o in zip(paths, decoded, strict=True) if isinstance(o, str)]
    if failed:
        named = "; ".join(f"{path_text(p)} ({reason})" for p, reason in failed)
        raise InputError(
            f"{source}: {len(failed)} of {len(paths)} image file(s) cannot be read (fix or remove "
            f"them): {named}"
        )
    digest = tiles_digest(sha256_file(path) for path in paths)
    return ClassTiles(np.stack(decoded), digest, source)  # type: ignore[arg-type]


def _pixel_tiles(images: np.ndarray) -> ClassTiles:
    """Pixels as given (the classifier resizes them to its input, as in inference)."""
    pixels = images[None] if images.ndim == 3 else images
    if pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.dtype != np.uint8 or pixels.shape[0] == 0:
        raise InputError(f"expected uint8 RGB pixels [N >= 1, H, W, 3], got {images.dtype} {images.shape}")
    pixels = np.ascontiguousarray(pixels)
    digest = tiles_digest(hashlib.sha256(image.tobytes()).hexdigest() for image in pixels)
    return ClassTiles(pixels, digest, f"{pixels.shape[0]} image(s)")
