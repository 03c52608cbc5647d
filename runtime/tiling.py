"""The tiling contract as a pure function: which pixel windows cover a scene.

A grid of ``n_rows x n_cols`` tiles covers the whole scene. Tile ``(r, c)`` starts at
``(ys[r], xs[c])``: ``i * stride`` along each axis, except that the last row and column are shifted
inward to end exactly at the scene's edge (no padding is invented). Only when the scene is smaller
than one tile along an axis is that axis padded (one tile, start 0) and the grid flagged ``padded``.

Grid geometry for the class map: cell ``(r, c)`` is ``stride`` pixels wide and centred on the centre
of the unshifted tile ``(r, c)``, i.e. the cell's pixel extent is
``[c*stride + (tile-stride)/2, c*stride + (tile+stride)/2)``. With ``stride == tile`` the cells are the
tiles themselves. The shifted last row/column is drawn as a full cell, so the class map can extend up to
``stride - 1`` pixels past the scene's bottom/right edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from rfmml.runtime.errors import InputError


class Window(NamedTuple):
    """A pixel window ``[y0, y1) x [x0, x1)`` inside the scene (clipped to it)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def axis_starts(length: int, tile: int, stride: int) -> tuple[tuple[int, ...], bool]:
    """Tile start offsets along one axis of ``length`` pixels, and whether the axis is padded.

    ``length >= tile``: starts ``0, stride, 2*stride, ...`` while they leave room for a whole tile,
    then one last start ``length - tile`` when the previous tiles do not reach the edge.
    ``length < tile``: a single start 0 and ``padded = True``.
    """
    if length < 1:
        raise InputError(f"scene length must be >= 1 pixel, got {length}")
    if tile < 1 or stride < 1:
        raise InputError(f"tile and stride must be >= 1, got tile={tile} stride={stride}")
    if length <= tile:
        return (0,), length < tile
    last = length - tile
    n = 1 + -(-last // stride)  # 1 + ceil(last / stride)
    starts = tuple(min(i * stride, last) for i in range(n))
    return starts, False


@dataclass(frozen=True)
class Grid:
    """The tiles covering a ``height x width`` scene; see the module docstring for the geometry."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    stride_y: int
    stride_x: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    padded_y: bool
    padded_x: bool

    @property
    def n_rows(self) -> int:
        return len(self.ys)

    @property
    def n_cols(self) -> int:
        return len(self.xs)

    @property
    def n_tiles(self) -> int:
        return self.n_rows * self.n_cols

    @property
    def padded(self) -> bool:
        """True when the scene is smaller than one tile along an axis (tiles are zero-padded)."""
        return self.padded_y or self.padded_x

    def window(self, row: int, col: int) -> Window:
        """The scene pixels of tile ``(row, col)``; smaller than the tile only when ``padded``."""
        y0, x0 = self.ys[row], self.xs[col]
        return Window(x0, y0, min(x0 + self.tile_w, self.width), min(y0 + self.tile_h, self.height))

    def windows(self) -> list[tuple[int, int, Window]]:
        """All ``(row, col, window)`` in row-major order."""
        return [(r, c, self.window(r, c)) for r in range(self.n_rows) for c in range(self.n_cols)]

    def cell_origin(self) -> tuple[float, float]:
        """Pixel coordinates ``(x, y)`` of the class map's top-left corner (see the module docstring)."""
        return (self.tile_w - self.stride_x) / 2.0, (self.tile_h - self.stride_y) / 2.0

    def tile_centre(self, row: int, col: int) -> tuple[float, float]:
        """Pixel coordinates ``(x, y)`` of the centre of tile ``(row, col)``'s window."""
        w = self.window(row, col)
        return (w.x0 + w.x1) / 2.0, (w.y0 + w.y1) / 2.0


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, tuple):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def tile_grid(
    height: int, width: int, tile: int | tuple[int, int], stride: int | tuple[int, int] | None = None
) -> Grid:
    """The tiling of a ``height x width`` scene by ``tile`` (int or (h, w)) with ``stride`` (default tile).

    A stride larger than the tile would leave gaps, so it is refused.
    """
    tile_h, tile_w = _pair(tile)
    stride_y, stride_x = _pair(stride if stride is not None else (tile_h, tile_w))
    if stride_y > tile_h or stride_x > tile_w:
        raise InputError(f"stride {stride_y}x{stride_x} larger than tile {tile_h}x{tile_w} leaves gaps")
    ys, padded_y = axis_starts(height, tile_h, stride_y)
    xs, padded_x = axis_starts(width, tile_w, stride_x)
    return Grid(height, width, tile_h, tile_w, stride_y, stride_x, ys, xs, padded_y, padded_x)
