"""The tiling contract as a pure function: exact windows in every case."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rfmml.runtime.tiling import Window, axis_starts, tile_grid


def test_exact_multiple():
    grid = tile_grid(128, 192, 64)
    assert (grid.n_rows, grid.n_cols) == (2, 3)
    assert grid.ys == (0, 64) and grid.xs == (0, 64, 128)
    assert not grid.padded
    assert grid.windows() == [
        (0, 0, Window(0, 0, 64, 64)),
        (0, 1, Window(64, 0, 128, 64)),
        (0, 2, Window(128, 0, 192, 64)),
        (1, 0, Window(0, 64, 64, 128)),
        (1, 1, Window(64, 64, 128, 128)),
        (1, 2, Window(128, 64, 192, 128)),
    ]


def test_remainder_last_row_and_column_shifted_inward():
    grid = tile_grid(100, 150, 64)
    assert grid.ys == (0, 36)  # 100 - 64: ends exactly at the edge
    assert grid.xs == (0, 64, 86)  # 150 - 64
    assert grid.window(1, 2) == Window(86, 36, 150, 100)
    assert all(w.width == 64 and w.height == 64 for _, _, w in grid.windows())
    assert not grid.padded


def test_smaller_than_tile_is_padded_and_flagged():
    grid = tile_grid(40, 50, 64)
    assert (grid.n_rows, grid.n_cols) == (1, 1)
    assert grid.padded and grid.padded_x and grid.padded_y
    assert grid.window(0, 0) == Window(0, 0, 50, 40)  # the real pixels only; the tile is zero-padded
    one_axis = tile_grid(40, 130, 64)
    assert one_axis.padded_y and not one_axis.padded_x
    assert one_axis.xs == (0, 64, 66)
    assert one_axis.window(0, 2) == Window(66, 0, 130, 40)


def test_overlapping_stride():
    grid = tile_grid(64, 160, 64, 32)
    assert grid.xs == (0, 32, 64, 96)  # 96 + 64 = 160: no shift needed
    grid = tile_grid(64, 170, 64, 32)
    assert grid.xs == (0, 32, 64, 96, 106)  # last shifted inward to 170 - 64
    assert grid.ys == (0,)
    assert grid.cell_origin() == (16.0, 16.0)  # cells of 32 px centred on the tiles


def test_non_square_tile_and_stride():
    grid = tile_grid(100, 300, (50, 100), (25, 100))
    assert grid.ys == (0, 25, 50) and grid.xs == (0, 100, 200)
    assert grid.window(2, 2) == Window(200, 50, 300, 100)


def test_tile_equal_to_scene_and_one_pixel_scene():
    assert tile_grid(64, 64, 64).windows() == [(0, 0, Window(0, 0, 64, 64))]
    grid = tile_grid(1, 1, 64)
    assert grid.padded and grid.window(0, 0) == Window(0, 0, 1, 1)


def test_refuses_bad_arguments():
    with pytest.raises(ValueError, match="gaps"):
        tile_grid(100, 100, 32, 64)
    with pytest.raises(ValueError):
        axis_starts(0, 64, 64)
    with pytest.raises(ValueError):
        axis_starts(100, 0, 1)


@pytest.mark.parametrize(
    ("length", "tile", "stride"),
    list(itertools.product([1, 63, 64, 65, 127, 128, 200, 513], [64], [16, 48, 64])),
)
def test_invariants_cover_every_pixel_inside_the_scene(length, tile, stride):
    starts, padded = axis_starts(length, tile, stride)
    assert padded == (length < tile)
    covered = np.zeros(length, dtype=bool)
    for start in starts:
        assert 0 <= start and (start + tile <= length or padded)
        covered[start : start + tile] = True
    assert covered.all()
    assert list(starts) == sorted(set(starts))  # strictly increasing, no duplicate tiles
    steps = np.diff(starts)
    assert (steps[:-1] == stride).all() if len(steps) > 1 else True
    assert (steps <= stride).all()
