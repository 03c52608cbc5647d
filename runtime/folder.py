"""Classify a folder of tiles: recursive, decoded in a thread pool, batched through the model.

Files with an image suffix (:data:`rfmml.runtime.imageio.IMAGE_SUFFIXES`) are decoded with
:func:`rfmml.runtime.imageio.load_tile` (the decode + resize of training) by ``workers`` threads, at most
``3 * batch`` files ahead of the model, so decoding overlaps inference and memory stays bounded.
A file that cannot be decoded is listed with its reason and the rest are still classified. Other files
(no image suffix; hidden files are not considered) are listed as ignored.
"""

from __future__ import annotations

import csv
import os
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from rfmml.runtime.imageio import ImageReadError, is_image_file, load_tile

if TYPE_CHECKING:
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.progress import Progress


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
        values = Counter(self.labels[:, 0].tolist()) if len(self.paths) else Counter()
        return {name: int(values.get(i, 0)) for i, name in enumerate(self.class_names)}

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
            lines += [f"  {path}: {reason}" for path, reason in self.failed]
        if self.ignored:
            shown = ", ".join(str(p) for p in self.ignored[:5]) + (" ..." if len(self.ignored) > 5 else "")
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


def _decode(path: Path, size: tuple[int, int]) -> np.ndarray | str:
    """Pixels uint8 [H, W, 3], or the one-line reason the file could not be decoded."""
    try:
        return load_tile(path, size).pixels
    except ImageReadError as error:
        return error.reason
    except OSError as error:  # unreadable (permissions, vanished)
        return f"cannot read file ({error.strerror or error})"
    except MemoryError:
        return "out of memory while decoding"


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
    import time

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder not found: {folder}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    images, ignored = list_files(folder)
    workers = workers or min(8, os.cpu_count() or 1)
    k = max(1, min(top_k, len(clf.class_names)))
    size = clf.input_size
    paths: list[Path] = []
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    failed: list[tuple[Path, str]] = []
    if progress is not None:
        progress.reset(len(images))
    start = time.perf_counter()
    buffer = np.empty((batch, size[0], size[1], 3), dtype=np.uint8)
    buffered: list[Path] = []

    def flush() -> None:
        if buffered:
            top, values = clf.predict_topk(buffer[: len(buffered)], k)
            paths.extend(buffered)
            labels.append(top)
            scores.append(values)
            if progress is not None:
                progress.update(len(buffered))
            buffered.clear()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rfmml-decode") as pool:
        pending: deque[tuple[Path, Future]] = deque()
        queue_ahead = iter(images)
        for path in queue_ahead:
            pending.append((path, pool.submit(_decode, path, size)))
            if len(pending) >= 3 * batch:
                break
        while pending:
            path, future = pending.popleft()
            nxt = next(queue_ahead, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode, nxt, size)))
            outcome = future.result()
            if isinstance(outcome, str):
                failed.append((path, outcome))
                if progress is not None:
                    progress.update(1)
                continue
            buffer[len(buffered)] = outcome
            buffered.append(path)
            if len(buffered) == batch:
                flush()
        flush()
    if progress is not None:
        progress.close()
    return FolderResult(
        root=folder,
        class_names=clf.class_names,
        head_kind=clf.head_kind,
        paths=paths,
        labels=np.concatenate(labels) if labels else np.zeros((0, k), np.int64),
        scores=np.concatenate(scores) if scores else np.zeros((0, k), np.float32),
        failed=failed,
        ignored=ignored,
        seconds=time.perf_counter() - start,
        providers=clf.providers,
    )


def write_folder_csv(result: FolderResult, handle: TextIO) -> None:
    """CSV: path, class, score, top2_class, top2_score, ..., error (failed files: empty class + reason)."""
    k = result.labels.shape[1] if result.labels.ndim == 2 else 1
    writer = csv.writer(handle)
    header = ["path", "class", "score"]
    for rank in range(2, k + 1):
        header += [f"top{rank}_class", f"top{rank}_score"]
    writer.writerow([*header, "error"])
    names = result.class_names
    for i, path in enumerate(result.paths):
        line: list[str] = [str(path)]
        for rank in range(k):
            line += [names[int(result.labels[i, rank])], f"{result.scores[i, rank]:.6g}"]
        writer.writerow([*line, ""])
    for path, reason in result.failed:
        writer.writerow([str(path), *([""] * (2 * k)), reason])
