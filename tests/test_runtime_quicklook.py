"""The quick-look: scene and class map side by side, legend with tile counts, optional wrong-tiles panel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import COLOURS, colour_pair, write_geotiff
from test_runtime_scene import LABELS, mosaic

from rfmml.runtime import SKIPPED, Classifier
from rfmml.runtime.errors import InputError
from rfmml.runtime.quicklook import (
    MARGIN,
    SKIPPED_COLOUR,
    TITLE_H,
    WRONG_COLOUR,
    _legend,
    palette,
    render_quicklook,
    write_quicklook,
)

pytest.importorskip("rasterio")
TILE = 32


@pytest.fixture
def result(tmp_path):
    clf = Classifier.load(colour_pair(tmp_path))
    return clf.classify_scene(write_geotiff(tmp_path / "scene.tif", mosaic(LABELS)))


def pixel(picture: np.ndarray, panel: int, row: int, col: int) -> tuple[int, ...]:
    """The colour at the centre of grid cell (row, col) of panel ``panel`` (0 scene, 1 classes, 2 errors)."""
    width = LABELS.shape[1] * TILE
    x = MARGIN + panel * (width + MARGIN) + col * TILE + TILE // 2
    y = MARGIN + TITLE_H + row * TILE + TILE // 2
    return tuple(int(v) for v in picture[y, x])


def test_scene_and_class_map_side_by_side(result):
    picture = np.asarray(render_quicklook(result, max_side=LABELS.shape[1] * TILE))
    colours = palette(4)
    for row, col in np.ndindex(LABELS.shape):
        label = LABELS[row, col]
        scene_colour = tuple(int(v) for v in COLOURS[label]) if label >= 0 else (0, 0, 0)
        assert pixel(picture, 0, row, col) == scene_colour  # the scene itself, not a blend
        expected = tuple(int(v) for v in colours[label]) if label >= 0 else SKIPPED_COLOUR
        assert pixel(picture, 1, row, col) == expected
    assert picture.shape[1] > 2 * (LABELS.shape[1] * TILE + MARGIN)  # two panels and a legend
    assert [text for text, _ in _legend(result, None)] == [
        "red (2)", "green (4)", "blue (4)", "yellow (3)", "skipped (2)",
    ]  # fmt: skip


def test_truth_adds_a_panel_marking_the_wrong_tiles(result, tmp_path):
    truth = np.where(LABELS < 0, 0, LABELS)
    truth[0, 0] = 3  # the model says red: wrong
    truth[2, 4] = 1  # says blue: wrong
    truth[1, 1] = -1  # unknown: never marked
    picture = np.asarray(render_quicklook(result, max_side=LABELS.shape[1] * TILE, truth=truth))
    assert pixel(picture, 2, 0, 0) == WRONG_COLOUR and pixel(picture, 2, 2, 4) == WRONG_COLOUR
    assert pixel(picture, 2, 0, 1) not in (WRONG_COLOUR, SKIPPED_COLOUR)  # correct: faded class colour
    assert pixel(picture, 2, 1, 1) != WRONG_COLOUR and pixel(picture, 2, 0, 4) == SKIPPED_COLOUR
    assert sum(pixel(picture, 2, r, c) == WRONG_COLOUR for r, c in np.ndindex(LABELS.shape)) == 2
    assert _legend(result, truth)[-1] == ("wrong (2)", WRONG_COLOUR)
    look = write_quicklook(result, tmp_path / "look.png", max_side=80, truth=truth)
    with Image.open(look) as image:
        assert image.format == "PNG" and image.width > 3 * 80
    with pytest.raises(InputError, match=r"truth must be an integer class grid of shape \(3, 5\)"):
        render_quicklook(result, truth=truth[:2])
    assert result.class_map[0, 4] == SKIPPED
