"""Issue 9, items 7 and 9: paletted GeoTIFFs are classified from colours; a read that fails mid-scene
is one line naming the file and the window."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_fixtures import COLOURS, colour_pair

from rfmml.runtime import SKIPPED, Classifier
from rfmml.runtime.cli import main
from rfmml.runtime.quicklook import render_quicklook

rasterio = pytest.importorskip("rasterio")


def write_paletted(path, indices: np.ndarray, table: dict[int, tuple[int, ...]], **extra):
    from rasterio.transform import from_origin

    profile = dict(driver="GTiff", width=indices.shape[1], height=indices.shape[0], count=1, dtype="uint8")
    profile.update(crs="EPSG:32633", transform=from_origin(500000.0, 5000000.0, 10.0, 10.0))
    profile.update(photometric="palette", **extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(indices[None])
        dst.write_colormap(1, table)
    return path


def index_mosaic(grid: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 [rows*size, cols*size]: each tile filled with its palette index."""
    return np.kron(grid, np.ones((size, size), dtype=np.uint8)).astype(np.uint8)


# palette index -> colour: index 0 is green (not nodata), 1 red, 2 yellow, 3 blue, 4 black
TABLE = {0: (*COLOURS[1], 255), 1: (*COLOURS[0], 255), 2: (*COLOURS[3], 255), 3: (*COLOURS[2], 255)}
TABLE[4] = (0, 0, 0, 255)
TILE_INDEX = np.array([[0, 1, 2], [3, 0, 4]], dtype=np.uint8)


def test_paletted_geotiff_is_classified_from_its_colours(tmp_path):
    clf = Classifier.load(colour_pair(tmp_path))
    scene = write_paletted(tmp_path / "pal.tif", index_mosaic(TILE_INDEX), TABLE)
    result = clf.classify_scene(scene)
    # index 0 -> green (class 1), 1 -> red (0), 2 -> yellow (3), 3 -> blue (2); black index 4 is the
    # zero collar like any black pixel
    assert result.class_map.tolist() == [[1, 0, 3], [2, 1, SKIPPED]]
    assert "colour table expanded to RGB" in result.description
    assert np.all(result.valid_fraction[0] == 1.0)  # index 0 is valid data
    look = np.asarray(render_quicklook(result, max_side=96))
    assert tuple(look[8 + 16 + 16, 8 + 16]) == tuple(COLOURS[1])  # scene panel: tile (0, 0) is green


def test_paletted_index_zero_is_nodata_only_when_declared(tmp_path):
    clf = Classifier.load(colour_pair(tmp_path))
    scene = write_paletted(tmp_path / "nd.tif", index_mosaic(TILE_INDEX), TABLE, nodata=0)
    declared = clf.classify_scene(scene).class_map
    assert declared[0].tolist() == [SKIPPED, 0, 3] and declared[1, :2].tolist() == [2, SKIPPED]
    assert declared[1, 2] != SKIPPED  # declared nodata replaces the zero-collar rule: black is data
    scene = write_paletted(tmp_path / "keep.tif", index_mosaic(TILE_INDEX), TABLE)
    assert clf.classify_scene(scene, zero_collar=False).class_map[1, 2] != SKIPPED


def corrupt_block(path, block: int) -> None:
    """Overwrite the middle of one compressed tile of a tiled GeoTIFF with garbage."""
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item(f"BLOCK_OFFSET_{block % 4}_{block // 4}", "TIFF", bidx=1))
        size = int(ds.get_tag_item(f"BLOCK_SIZE_{block % 4}_{block // 4}", "TIFF", bidx=1))
    data = bytearray(path.read_bytes())
    data[offset + 2 : offset + size - 2] = b"\xa5" * (size - 4)
    path.write_bytes(bytes(data))


def test_mid_read_failure_is_one_line_naming_file_and_window(tmp_path, capsys):
    model = colour_pair(tmp_path)
    rng = np.random.default_rng(0)
    from runtime_fixtures import write_geotiff

    scene = write_geotiff(tmp_path / "broken.tif", rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8))
    corrupt_block(scene, 9)  # block row 2, column 1: pixels y 512..767, x 256..511
    out = tmp_path / "map.tif"
    assert main(["--model", str(model), str(scene), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"rfmml-infer: error: {scene}: read failed in window x 0..1024, y 512..544 (")
    assert "See previous exception" not in err[0]
    assert not out.exists()
