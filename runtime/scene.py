"""Classify a large scene tile by tile, reading ahead in a worker thread while the model runs.

The reader walks the grid (:mod:`rfmml.runtime.tiling`) row by row, reading one window per group of
neighbouring tiles (never the whole scene; a group holds at most ``batch`` tiles and
:data:`READ_PIXELS` pixels), drops tiles whose pixels are mostly nodata (more than half invalid: marked
255 in the class map), zero-pads tiles of a scene smaller than a tile, resizes tiles to the model's input
size when the tile size differs, and hands uint8 [B, H, W, 3] batches to the calling thread through
:func:`rfmml.runtime.prefetch.read_ahead`. Memory is bounded by the batch and the read-ahead depth,
plus the grid's result arrays: about ``9 + 6 * top_k`` bytes per tile, at most :data:`MAX_GRID_TILES`
tiles (a larger grid is refused with one line: use a larger tile or stride, or split the scene).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rfmml.runtime.errors import InputError
from rfmml.runtime.imageio import resize_rgb
from rfmml.runtime.prefetch import read_ahead
from rfmml.runtime.scene_io import open_scene
from rfmml.runtime.tiling import Grid, Window, tile_grid

if TYPE_CHECKING:
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.progress import Progress
    from rfmml.runtime.scene_io import RasterioScene

SKIPPED = 255
MAX_NODATA_FRACTION = 0.5  # a tile with more than this fraction of nodata pixels is skipped
READ_AHEAD = 2  # batches prepared ahead of the model
READ_PIXELS = 2**24  # at most this many scene pixels per window read (a group of neighbouring tiles)
MAX_GRID_TILES = 2**22  # 4,194,304 tiles (e.g. 2048 x 2048): the result arrays stay ~100 MiB


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
        values = np.bincount(self.class_map.ravel(), minlength=256)
        return {name: int(values[i]) for i, name in enumerate(self.class_names)}

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


def _column_groups(grid: Grid, batch: int) -> list[range]:
    """Neighbouring columns read as one window: at most ``batch`` tiles and about READ_PIXELS pixels."""
    per_read = max(1, min(batch, READ_PIXELS // (grid.tile_h * grid.tile_w)))
    return [range(c0, min(c0 + per_read, grid.n_cols)) for c0 in range(0, grid.n_cols, per_read)]


def _tile_batches(
    scene: RasterioScene, grid: Grid, size: tuple[int, int], batch: int, valid_fraction: np.ndarray
) -> Iterator[_Batch]:
    """The scene's valid tiles in batches (row-major); fills ``valid_fraction`` [n_rows, n_cols]."""
    current = _Batch(batch, size)
    groups = _column_groups(grid, batch)
    for row in range(grid.n_rows):
        y0, y1 = grid.window(row, 0).y0, grid.window(row, 0).y1
        for cols in groups:
            xa, xb = grid.window(row, cols[0]).x0, grid.window(row, cols[-1]).x1
            rgb, valid = scene.read(Window(xa, y0, xb, y1))
            for col in cols:
                w = grid.window(row, col)
                fraction = float(valid[:, w.x0 - xa : w.x1 - xa].mean())
                valid_fraction[row, col] = fraction
                current.covered += 1
                if 1.0 - fraction > MAX_NODATA_FRACTION:
                    continue
                current.pixels[current.n] = _fit_tile(rgb[:, w.x0 - xa : w.x1 - xa], grid, size)
                current.cells[current.n] = (row, col)
                current.n += 1
                if current.full():
                    yield current
                    current = _Batch(batch, size)
    if current.covered:
        yield current


def scene_grid(height: int, width: int, tile: tuple[int, int], stride: int | None, path: Path) -> Grid:
    """The grid of a ``height x width`` scene; InputError (one line) when it exceeds MAX_GRID_TILES."""
    grid = tile_grid(height, width, tile, (stride, stride) if stride else None)
    if grid.n_tiles > MAX_GRID_TILES:
        raise InputError(
            f"{path}: {width}x{height} px makes {grid.n_rows}x{grid.n_cols} = {grid.n_tiles} tiles, more "
            f"than the limit of {MAX_GRID_TILES}; use a larger --tile/--stride or split the scene"
        )
    return grid


def _empty_results(grid: Grid, k: int) -> dict[str, np.ndarray]:
    shape = (grid.n_rows, grid.n_cols)
    return {
        "class_map": np.full(shape, SKIPPED, dtype=np.uint8),
        "scores": np.full(shape, np.nan, dtype=np.float32),
        "valid_fraction": np.zeros(shape, dtype=np.float32),
        "top_labels": np.full((*shape, k), -1, dtype=np.int16),
        "top_scores": np.full((*shape, k), np.nan, dtype=np.float32),
    }


def _classify_batches(
    clf: Classifier, batches: Iterator[_Batch], arrays: dict[str, np.ndarray], progress: Progress | None
) -> None:
    """Run the model on every batch and write its results into ``arrays`` (see _empty_results)."""
    k = arrays["top_labels"].shape[-1]
    with closing(read_ahead(batches, READ_AHEAD, name="rfmml-scene-reader")) as ahead:
        for item in ahead:
            if item.n:
                labels, values = clf.predict_topk(item.pixels[: item.n], k)
                rows, cols = item.cells[: item.n, 0], item.cells[: item.n, 1]
                arrays["class_map"][rows, cols] = labels[:, 0]
                arrays["scores"][rows, cols] = values[:, 0]
                arrays["top_labels"][rows, cols] = labels
                arrays["top_scores"][rows, cols] = values
            if progress is not None:
                progress.update(item.covered)


def _check_sizes(batch: int, tile: int | None, stride: int | None) -> None:
    for name, value in (("batch", batch), ("tile", tile), ("stride", stride)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")


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
    Raises SceneError (one line) for an unreadable scene, InputError for bad tile/stride/batch.
    """
    _check_sizes(batch, tile, stride)
    path = Path(path)
    size = clf.input_size
    scene = open_scene(path, bands=bands, zero_collar=zero_collar)
    try:
        grid = scene_grid(scene.height, scene.width, (tile, tile) if tile else size, stride, path)
        arrays = _empty_results(grid, max(1, min(top_k, len(clf.class_names))))
        if progress is not None:
            progress.reset(grid.n_tiles)
        start = time.perf_counter()
        batches = _tile_batches(scene, grid, size, batch, arrays["valid_fraction"])
        _classify_batches(clf, batches, arrays, progress)
        seconds = time.perf_counter() - start
    finally:
        scene.close()
    if progress is not None:
        progress.close()
    return SceneResult(
        path=path, grid=grid, class_names=clf.class_names, head_kind=clf.head_kind, **arrays,
        crs_wkt=scene.crs_wkt, transform=scene.transform, seconds=seconds, providers=clf.providers,
        description=scene.description, bands=bands, zero_collar=zero_collar,
    )  # fmt: skip
