"""Scenes per the tiling contract, on synthetic rasters with a known class per tile."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from runtime_fixtures import NAMES, colour_pair, uniform_tile, write_geotiff

from rfmml.runtime import SKIPPED, Classifier, SceneError, write_class_map, write_tile_csv
from rfmml.runtime.cli import main
from rfmml.runtime.quicklook import write_quicklook

rasterio = pytest.importorskip("rasterio")


def mosaic(labels: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 [rows*size, cols*size, 3]: one uniform tile per label (-1 = black)."""
    rows = []
    for line in labels:
        row = [uniform_tile(v, (size, size)) if v >= 0 else np.zeros((size, size, 3), np.uint8) for v in line]
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


LABELS = np.array([[0, 1, 2, 3, -1], [1, 2, 3, 0, 1], [2, 3, -1, 1, 2]])


@pytest.fixture
def clf(tmp_path):
    return Classifier.load(colour_pair(tmp_path))


def test_geotiff_class_map_matches_known_labels_and_reads_back(tmp_path, clf):
    scene = write_geotiff(tmp_path / "scene.tif", mosaic(LABELS), nodata=None)
    result = clf.classify_scene(scene, batch=4)
    expected = np.where(LABELS < 0, SKIPPED, LABELS)
    np.testing.assert_array_equal(result.class_map, expected)
    assert result.n_skipped == 2 and result.counts() == {"red": 2, "green": 4, "blue": 4, "yellow": 3}
    out = write_class_map(result, tmp_path / "map.tif")
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        assert ds.crs == src.crs and ds.nodata == SKIPPED and ds.dtypes[0] == "uint8"
        assert ds.transform == src.transform @ src.transform.scale(32)
        assert (ds.height, ds.width) == LABELS.shape
        np.testing.assert_array_equal(ds.read(1), expected)
        assert json.loads(ds.tags()["class_names"]) == list(NAMES)
        assert ds.tags(1)["CLASS_2"] == "blue" and ds.descriptions == ("class",)
        assert ds.colormap(1)[0][:3] != ds.colormap(1)[1][:3]
    assert "<Category>yellow</Category>" in (tmp_path / "map.tif.aux.xml").read_text()
    rows = list(csv.DictReader(write_tile_csv(result, tmp_path / "tiles.csv").open()))
    assert len(rows) == LABELS.size
    first = rows[1]
    assert (first["row"], first["col"], first["x0"], first["y0"], first["x1"], first["y1"]) == (
        "0", "1", "32", "0", "64", "32",
    )  # fmt: skip
    assert first["class"] == "green" and first["status"] == "ok"
    x, y = src.transform * (48, 16)  # centre of tile (0, 1)
    assert float(first["map_x"]) == pytest.approx(x) and float(first["map_y"]) == pytest.approx(y)
    assert rows[4]["status"] == "skipped" and rows[4]["class"] == ""


def test_remainder_and_overlap_geometry(tmp_path, clf):
    scene = write_geotiff(tmp_path / "odd.tif", mosaic(LABELS)[:90, :150])
    result = clf.classify_scene(scene, stride=16)
    g = result.grid
    assert g.xs[-1] == 150 - 32 and g.ys[-1] == 90 - 32
    assert g.xs[:3] == (0, 16, 32)
    out = write_class_map(result, tmp_path / "odd_map.tif")
    with rasterio.open(out) as ds, rasterio.open(scene) as src:
        # cells of 16 px centred on the tiles: origin shifted by (32 - 16) / 2 = 8 px
        assert ds.transform == src.transform @ src.transform.translation(8, 8) @ src.transform.scale(16)
        assert (ds.height, ds.width) == (g.n_rows, g.n_cols)
    assert result.class_map[0, 0] == 0 and result.class_map[0, 2] == 1  # tiles aligned with the mosaic


def test_scene_smaller_than_tile_is_padded_and_flagged(tmp_path, clf):
    scene = write_geotiff(tmp_path / "small.tif", uniform_tile(1, (20, 25)))
    result = clf.classify_scene(scene)
    assert result.grid.padded and result.class_map.shape == (1, 1)
    assert result.class_map[0, 0] != SKIPPED and result.valid_fraction[0, 0] == 1.0
    rows = list(csv.DictReader(write_tile_csv(result, tmp_path / "t.csv").open()))
    assert rows[0]["padded"] == "1" and (rows[0]["x1"], rows[0]["y1"]) == ("25", "20")


def test_nodata_rules(tmp_path, clf):
    pixels = mosaic(np.array([[0, 1, 2]]))
    pixels[:, 32 : 32 + 16] = 7  # tile 1: exactly half nodata -> classified
    pixels[:17, 64:] = 7  # tile 2: 17/32 rows nodata -> skipped
    pixels[:, :] = np.where(pixels == 7, 7, pixels)
    scene = write_geotiff(tmp_path / "nd.tif", pixels, nodata=7)
    result = clf.classify_scene(scene)
    assert result.class_map.tolist() == [[0, 1, SKIPPED]]
    assert result.valid_fraction[0, 1] == 0.5
    # alpha band: transparent tiles skipped
    alpha = np.full((32, 96, 1), 255, np.uint8)
    alpha[:, 64:] = 0
    rgba = np.concatenate([mosaic(np.array([[0, 1, 2]])), alpha], axis=2)
    scene = write_geotiff(tmp_path / "alpha.tif", rgba, photometric="RGB", alpha="YES")
    assert clf.classify_scene(scene).class_map.tolist() == [[0, 1, SKIPPED]]
    # no nodata declared: a black collar is skipped, unless --no-zero-collar
    scene = write_geotiff(tmp_path / "black.tif", mosaic(np.array([[0, -1, 2]])))
    assert clf.classify_scene(scene).class_map.tolist() == [[0, SKIPPED, 2]]
    assert SKIPPED not in clf.classify_scene(scene, zero_collar=False).class_map


def test_tile_larger_than_model_input_is_resized(tmp_path, clf):
    scene = write_geotiff(tmp_path / "big.tif", mosaic(LABELS, size=64))
    result = clf.classify_scene(scene, tile=64)
    np.testing.assert_array_equal(result.class_map, np.where(LABELS < 0, SKIPPED, LABELS))


def test_png_scene_gives_png_class_map_and_quicklook(tmp_path, clf):
    pixels = np.concatenate([mosaic(LABELS), np.full((*mosaic(LABELS).shape[:2], 1), 255, np.uint8)], axis=2)
    pixels[:32, 32:64, 3] = 0  # transparent tile
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "scene.png")
    result = clf.classify_scene(tmp_path / "scene.png")
    assert not result.georeferenced and result.class_map[0, 1] == SKIPPED
    assert result.class_map[1, 1] == 2
    out = write_class_map(result, tmp_path / "map.png")
    with Image.open(out) as image:
        assert image.mode == "P" and image.size == (5, 3) and image.info["transparency"] == SKIPPED
        assert json.loads(image.info["class_names"]) == list(NAMES)
        np.testing.assert_array_equal(np.asarray(image), result.class_map)
    look = write_quicklook(result, tmp_path / "look.png", max_side=80)
    with Image.open(look) as image:
        assert image.mode == "RGB" and image.width > 80 and image.height >= 48  # picture + legend panel


def test_cli_scene_outputs_and_errors(tmp_path, capsys, monkeypatch):
    model = colour_pair(tmp_path)
    scene = write_geotiff(tmp_path / "scene.tif", mosaic(LABELS))
    look = tmp_path / "look.png"
    assert (
        main(["--model", str(model), str(scene), "--out", str(tmp_path / "m.tif"), "--quicklook", str(look)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "providers in use" in printed and "skipped" in printed and look.is_file()
    assert (tmp_path / "m.csv").is_file()
    monkeypatch.chdir(tmp_path)
    assert main(["--model", str(model), str(scene), "-q", "--head", "svm"]) == 0
    assert (tmp_path / "scene_classmap.tif").is_file() and (tmp_path / "scene_classmap.csv").is_file()
    assert main(["--model", str(model), str(scene), "--out", "map.jpg"]) == 2
    before = scene.read_bytes()
    for clash in (["--out", str(scene)], ["--out", "m.png", "--quicklook", "m.png"], ["--csv", "m.tif"]):
        assert main(["--model", str(model), str(scene), "--out", "m.tif", *clash]) == 2
        assert "must be distinct files, none of them INPUT" in capsys.readouterr().err
    assert scene.read_bytes() == before
    assert main(["--model", str(model), str(scene), "--bands", "1,2,9"]) == 2
    assert "outside 1..3" in capsys.readouterr().err
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    assert main(["--model", str(model), str(empty)]) == 2
    with pytest.raises(SceneError):
        Classifier.load(model).classify_scene(tmp_path / "missing.tif")


def test_without_rasterio_geotiff_needs_the_geo_extra(tmp_path, clf, monkeypatch):
    import rfmml.runtime.outputs as outputs
    import rfmml.runtime.scene_io as scene_io

    monkeypatch.setattr(scene_io, "have_rasterio", lambda: False)
    monkeypatch.setattr(outputs, "have_rasterio", lambda: False)
    geotiff = write_geotiff(tmp_path / "geo.tif", mosaic(LABELS))
    with pytest.raises(SceneError, match=r'pip install "rfmml\[geo\]"'):
        clf.classify_scene(geotiff)
    plain = tmp_path / "plain.tif"
    Image.fromarray(mosaic(LABELS)).save(plain)  # a TIFF without geo tags: Pillow reads it
    result = clf.classify_scene(plain)
    np.testing.assert_array_equal(result.class_map, np.where(LABELS < 0, SKIPPED, LABELS))
    with pytest.raises(SceneError, match=r'pip install "rfmml\[geo\]"'):
        write_class_map(result, tmp_path / "map.tif")
