"""Classify a large scene tile by tile: a reader thread feeds batches while the model runs.

The reader walks the grid (:mod:`rfmml.runtime.tiling`) row by row, reading one window per group of up
to ``batch`` neighbouring tiles (never the whole scene), drops tiles whose pixels are mostly nodata
(more than half invalid: marked 255 in the class map), zero-pads tiles of a scene smaller than a tile,
resizes tiles to the model's input size when the tile size differs, and puts uint8 [B, H, W, 3] batches
on a queue of depth ``QUEUE_DEPTH``. The calling thread runs the session and the head on each batch.
Memory is bounded by the batch and the queue, not the scene.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rfmml.runtime.imageio import resize_rgb
from rfmml.runtime.scene_io import open_scene
from rfmml.runtime.tiling import Grid, Window, tile_grid

if TYPE_CHECKING:
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.progress import Progress

SKIPPED = 255
MAX_NODATA_FRACTION = 0.5  # a tile with more than this fraction of nodata pixels is skipped
QUEUE_DEPTH = 3


@dataclass
class SceneResult:
    """Per-grid-cell results of a scene; arrays are [n_rows, n_cols] (``top_*`` add a last axis k).

    class_map uint8 (255 = skipped), scores float32 (NaN when skipped), valid_fraction float32,
    top_labels int16 [.., k] (-1 when skipped), top_scores float32 [.., k]. ``transform`` is the
    scene's affine (a, b, c, d, e, f) or None; ``crs_wkt`` its CRS or None.
    """

    path: Path
    grid: Grid
    class_names: tuple[str, ...]
    head_kind: str
    class_map: np.ndarray
    scores: np.ndarray
    valid_fraction: np.ndarray
    top_labels: np.ndarray
    top_scores: np.ndarray
    crs_wkt: str | None
    transform: tuple[float, ...] | None
    seconds: float = 0.0
    providers: list[str] = field(default_factory=list)
    description: str = ""
    bands: tuple[int, int, int] | None = None
    zero_collar: bool = True

    @property
    def georeferenced(self) -> bool:
        return self.transform is not None

    @property
    def n_skipped(self) -> int:
        return int((self.class_map == SKIPPED).sum())

    @property
    def n_classified(self) -> int:
        return self.grid.n_tiles - self.n_skipped

    def counts(self) -> dict[str, int]:
        """Tiles per class name (classes with no tile included, as 0)."""
        values = Counter(self.class_map[self.class_map != SKIPPED].ravel().tolist())
        return {name: int(values.get(i, 0)) for i, name in enumerate(self.class_names)}

    def map_transform(self) -> tuple[float, ...] | None:
        """Affine (a, b, c, d, e, f) of the class map: the scene's, shifted and scaled to the grid cells."""
        if self.transform is None:
            return None
        a, b, c, d, e, f = self.transform
        ox, oy = self.grid.cell_origin()
        sx, sy = self.grid.stride_x, self.grid.stride_y
        return (a * sx, b * sy, a * ox + b * oy + c, d * sx, e * sy, d * ox + e * oy + f)

    def map_xy(self, x: float, y: float) -> tuple[float, float] | None:
        """Map coordinates of scene pixel position (x, y), or None when not georeferenced."""
        if self.transform is None:
            return None
        a, b, c, d, e, f = self.transform
        return a * x + b * y + c, d * x + e * y + f


class _Batch:
    """Tiles gathered by the reader: pixels uint8 [n, H, W, 3] and their (row, col) [n, 2]."""

    def __init__(self, capacity: int, size: tuple[int, int]) -> None:
        self.pixels = np.empty((capacity, size[0], size[1], 3), dtype=np.uint8)
        self.cells = np.empty((capacity, 2), dtype=np.int64)
        self.n = 0
        self.covered = 0  # grid cells this batch accounts for, skipped ones included (for progress)

    def full(self) -> bool:
        return self.n == len(self.pixels)


def _fit_tile(pixels: np.ndarray, grid: Grid, size: tuple[int, int]) -> np.ndarray:
    """Zero-pad a window smaller than the tile (scene smaller than a tile), then resize to ``size``."""
    if pixels.shape[0] < grid.tile_h or pixels.shape[1] < grid.tile_w:
        padded = np.zeros((grid.tile_h, grid.tile_w, 3), dtype=np.uint8)
        padded[: pixels.shape[0], : pixels.shape[1]] = pixels
        pixels = padded
    return resize_rgb(np.ascontiguousarray(pixels), size)


def _reader(scene, grid, size, batch, valid_fraction, out: queue.Queue, stop: threading.Event) -> None:
    """Reader thread body: put _Batch objects on ``out``, then None; an exception is put as itself."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        current = _Batch(batch, size)
        for row in range(grid.n_rows):
            y0, y1 = grid.window(row, 0).y0, grid.window(row, 0).y1
            for c0 in range(0, grid.n_cols, batch):
                cols = range(c0, min(c0 + batch, grid.n_cols))
                xa, xb = grid.window(row, cols[0]).x0, grid.window(row, cols[-1]).x1
                rgb, valid = scene.read(Window(xa, y0, xb, y1))
                for col in cols:
                    w = grid.window(row, col)
                    tile_valid = valid[:, w.x0 - xa : w.x1 - xa]
                    fraction = float(tile_valid.mean())
                    valid_fraction[row, col] = fraction
                    current.covered += 1
                    if 1.0 - fraction > MAX_NODATA_FRACTION:
                        continue
                    current.pixels[current.n] = _fit_tile(rgb[:, w.x0 - xa : w.x1 - xa], grid, size)
                    current.cells[current.n] = (row, col)
                    current.n += 1
                    if current.full():
                        if not put(current):
                            return
                        current = _Batch(batch, size)
        if current.covered and not put(current):
            return
        put(None)
    except BaseException as error:  # handed to the consumer, which re-raises it
        put(error)


def classify_scene(
    clf: Classifier,
    path: str | Path,
    tile: int | None = None,
    stride: int | None = None,
    *,
    batch: int = 64,
    top_k: int = 3,
    bands: tuple[int, int, int] | None = None,
    zero_collar: bool = True,
    progress: Progress | None = None,
) -> SceneResult:
    """Tile ``path`` and classify every tile with ``clf``.

    tile: tile side in scene pixels (default: the model's input size; resized to it when different);
    stride: step between tiles (default: tile, no overlap; smaller overlaps, larger is refused);
    bands: 1-based RGB band indexes (rasterio scenes; default: by colour interpretation, else 1, 2, 3).
    Raises SceneError (one line) for an unreadable scene, ValueError for bad tile/stride/batch.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    size = clf.input_size
    tile_hw = (tile, tile) if tile else size
    if stride is not None and stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if min(tile_hw) < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    scene = open_scene(path, bands=bands, zero_collar=zero_collar)
    try:
        grid = tile_grid(scene.height, scene.width, tile_hw, (stride, stride) if stride else None)
        k = max(1, min(top_k, len(clf.class_names)))
        shape = (grid.n_rows, grid.n_cols)
        class_map = np.full(shape, SKIPPED, dtype=np.uint8)
        scores = np.full(shape, np.nan, dtype=np.float32)
        valid_fraction = np.zeros(shape, dtype=np.float32)
        top_labels = np.full((*shape, k), -1, dtype=np.int16)
        top_scores = np.full((*shape, k), np.nan, dtype=np.float32)
        if progress is not None:
            progress.reset(grid.n_tiles)
        start = time.perf_counter()
        batches: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        stop = threading.Event()
        thread = threading.Thread(
            target=_reader,
            args=(scene, grid, size, batch, valid_fraction, batches, stop),
            name="rfmml-scene-reader",
            daemon=True,
        )
        thread.start()
        try:
            while True:
                item = batches.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item.n:
                    labels, values = clf.predict_topk(item.pixels[: item.n], k)
                    rows, cols = item.cells[: item.n, 0], item.cells[: item.n, 1]
                    class_map[rows, cols] = labels[:, 0]
                    scores[rows, cols] = values[:, 0]
                    top_labels[rows, cols] = labels
                    top_scores[rows, cols] = values
                if progress is not None:
                    progress.update(item.covered)
        finally:
            stop.set()
            thread.join()
        seconds = time.perf_counter() - start
        if progress is not None:
            progress.close()
        return SceneResult(
            path=Path(path),
            grid=grid,
            class_names=clf.class_names,
            head_kind=clf.head_kind,
            class_map=class_map,
            scores=scores,
            valid_fraction=valid_fraction,
            top_labels=top_labels,
            top_scores=top_scores,
            crs_wkt=scene.crs_wkt,
            transform=scene.transform,
            seconds=seconds,
            providers=clf.providers,
            description=scene.description,
            bands=bands,
            zero_collar=zero_collar,
        )
    finally:
        scene.close()
