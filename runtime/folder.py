"""Classify a folder of tiles: recursive, decoded by a thread pool, batched through the model.

Files with an image suffix (:data:`rfmml.runtime.imageio.IMAGE_SUFFIXES`) are decoded with
:func:`rfmml.runtime.imageio.load_tile` (the decode + resize of training) by ``workers`` threads, one
batch at a time, :data:`READ_AHEAD` batches ahead of the model (:func:`rfmml.runtime.prefetch.read_ahead`),
so decoding overlaps inference and memory stays bounded. A file that cannot be decoded (corrupt, too
large for a tile, unreadable) is listed with its reason and the rest are still classified. Other files
(no image suffix; hidden files are not considered) are listed as ignored. File names go into the CSV
and the summary through :func:`rfmml.runtime.output_files.path_text` (lossless for any bytes).
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from rfmml.runtime.errors import ImageReadError, InputError
from rfmml.runtime.imageio import is_image_file, load_tile
from rfmml.runtime.output_files import path_text
from rfmml.runtime.prefetch import read_ahead

if TYPE_CHECKING:
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.progress import Progress

READ_AHEAD = 2  # decoded batches waiting for the model


@dataclass
class FolderResult:
    """paths: the classified files, in sorted order; labels int64 [N, k] and scores float32 [N, k],
    best first; failed: (path, reason) of files that could not be decoded; ignored: non-image files."""

    root: Path
    class_names: tuple[str, ...]
    head_kind: str
    paths: list[Path]
    labels: np.ndarray
    scores: np.ndarray
    failed: list[tuple[Path, str]] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    providers: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        values = np.bincount(self.labels[:, 0], minlength=len(self.class_names)) if self.paths else None
        return {name: int(values[i]) if values is not None else 0 for i, name in enumerate(self.class_names)}

    def summary_lines(self) -> list[str]:
        n = len(self.paths)
        rate = n / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"{n} images classified in {self.seconds:.2f} s ({rate:.1f} images/s), head {self.head_kind}, "
            f"providers {self.providers}"
        ]
        counts = self.counts()
        width = max(len(name) for name in counts)
        lines += [f"  {name:<{width}}  {count}" for name, count in counts.items()]
        if self.failed:
            lines.append(f"{len(self.failed)} file(s) could not be read:")
            lines += [f"  {path_text(path)}: {reason}" for path, reason in self.failed]
        if self.ignored:
            shown = ", ".join(path_text(p) for p in self.ignored[:5]) + (
                " ..." if len(self.ignored) > 5 else ""
            )
            lines.append(f"{len(self.ignored)} non-image file(s) ignored: {shown}")
        return lines


def list_files(root: str | Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under ``root``, recursively, sorted; hidden entries are left out."""
    root = Path(root)
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            (images if is_image_file(path) else others).append(path)
    return sorted(images), sorted(others)


def decode_tile(path: Path, size: tuple[int, int]) -> np.ndarray | str:
    """Pixels uint8 [H, W, 3], or the one-line reason the file could not be decoded."""
    try:
        return load_tile(path, size).pixels
    except ImageReadError as error:
        return error.reason
    except OSError as error:  # unreadable (permissions, vanished)
        return f"cannot read file ({error.strerror or error})"
    except MemoryError:
        return "out of memory while decoding"


@dataclass
class _Decoded:
    """One batch of files: pixels uint8 [n_ok, H, W, 3] of ``ok`` paths; ``failed`` (path, reason)."""

    ok: list[Path]
    pixels: np.ndarray
    failed: list[tuple[Path, str]]


def _decoded_batches(
    paths: list[Path], size: tuple[int, int], batch: int, workers: int
) -> Iterator[_Decoded]:
    """``paths`` decoded ``batch`` files at a time by ``workers`` threads, in order."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rfmml-decode") as pool:
        for start in range(0, len(paths), batch):
            chunk = paths[start : start + batch]
            outcomes = list(pool.map(decode_tile, chunk, repeat(size)))
            ok = [(p, o) for p, o in zip(chunk, outcomes, strict=True) if not isinstance(o, str)]
            pixels = np.empty((len(ok), size[0], size[1], 3), dtype=np.uint8)
            for i, (_, array) in enumerate(ok):
                pixels[i] = array
            failed = [(p, o) for p, o in zip(chunk, outcomes, strict=True) if isinstance(o, str)]
            yield _Decoded([p for p, _ in ok], pixels, failed)


def classify_folder(
    clf: Classifier,
    folder: str | Path,
    *,
    batch: int = 64,
    top_k: int = 3,
    workers: int = 0,
    progress: Progress | None = None,
) -> FolderResult:
    """Classify every image under ``folder``; ``workers`` decode threads (0 = min(8, CPUs))."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"folder not found: {path_text(folder)}")
    if batch < 1:
        raise InputError(f"batch must be >= 1, got {batch}")
    images, ignored = list_files(folder)
    k = max(1, min(top_k, len(clf.class_names)))
    result = FolderResult(folder, clf.class_names, clf.head_kind, [], np.zeros((0, k), np.int64),
                          np.zeros((0, k), np.float32), ignored=ignored, providers=clf.providers)  # fmt: skip
    if progress is not None:
        progress.reset(len(images))
    start = time.perf_counter()
    labels, scores = [result.labels], [result.scores]
    batches = _decoded_batches(images, clf.input_size, batch, workers or min(8, os.cpu_count() or 1))
    with closing(read_ahead(batches, READ_AHEAD, name="rfmml-folder-reader")) as ahead:
        for decoded in ahead:
            if decoded.ok:
                top, values = clf.predict_topk(decoded.pixels, k)
                labels.append(top)
                scores.append(values)
            result.paths += decoded.ok
            result.failed += decoded.failed
            if progress is not None:
                progress.update(len(decoded.ok) + len(decoded.failed))
    result.labels, result.scores = np.concatenate(labels), np.concatenate(scores)
    result.seconds = time.perf_counter() - start
    if progress is not None:
        progress.close()
    return result


def folder_csv_header(k: int) -> list[str]:
    header = ["path", "class", "score"]
    for rank in range(2, k + 1):
        header += [f"top{rank}_class", f"top{rank}_score"]
    return [*header, "error"]


def write_folder_csv(result: FolderResult, handle: TextIO) -> None:
    """CSV: path, class, score, top2_class, top2_score, ..., error (failed files: empty class + reason).

    Paths are written with :func:`rfmml.runtime.output_files.path_text` (UTF-8; non-UTF-8 bytes as
    ``\\xNN``, a backslash as ``\\\\``)."""
    k = result.labels.shape[1] if result.labels.ndim == 2 else 1
    writer = csv.writer(handle)
    writer.writerow(folder_csv_header(k))
    names = result.class_names
    for i, path in enumerate(result.paths):
        line: list[str] = [path_text(path)]
        for rank in range(k):
            line += [names[int(result.labels[i, rank])], f"{result.scores[i, rank]:.6g}"]
        writer.writerow([*line, ""])
    for path, reason in result.failed:
        writer.writerow([path_text(path), *([""] * (2 * k)), path_text(reason)])
