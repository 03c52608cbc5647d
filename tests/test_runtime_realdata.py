"""Real imagery from ../shared/data: a EuroSAT mosaic, the Landsat collar, the 4-band NAIP scene."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_fixtures import DATA, EUROSAT, LANDSAT, NAIP, build_stats_model, write_head

from rfmml.runtime import SKIPPED, Classifier, load_tile, write_class_map

rasterio = pytest.importorskip("rasterio")
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} absent")

SIZE = (64, 64)
N_TRAIN, N_TEST = 30, 12


def _files(class_dir):
    return sorted(p for p in class_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif"))


def _stats(pixels: np.ndarray) -> np.ndarray:
    """The stats model's embedding in numpy: per-channel means and stds of pixels / 255, [N, 6]."""
    x = pixels.astype(np.float64) / 255.0
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory):
    """(classifier, class names, held-out images uint8 [N, 64, 64, 3], labels [N])."""
    if not EUROSAT.is_dir():
        pytest.skip(f"EuroSAT absent at {EUROSAT}")
    names = tuple(sorted(p.name for p in EUROSAT.iterdir() if p.is_dir()))
    protos, test_images, test_labels = [], [], []
    for label, name in enumerate(names):
        files = _files(EUROSAT / name)
        train = np.stack([load_tile(p, SIZE).pixels for p in files[:N_TRAIN]])
        protos.append(_stats(train).mean(axis=0))
        test_images += [load_tile(p, SIZE).pixels for p in files[-N_TEST:]]  # never used for the prototypes
        test_labels += [label] * N_TEST
    folder = tmp_path_factory.mktemp("eurosat_model")
    model = build_stats_model(folder / "model.onnx", SIZE, stats="meanstd")
    write_head(model, np.array(protos), names, input_size=SIZE)
    return Classifier.load(model, providers="cpu"), names, np.stack(test_images), np.array(test_labels)


def test_real_images_flow_above_chance(eurosat):
    clf, names, images, labels = eurosat
    predicted, _ = clf.predict(images)
    accuracy = float((predicted == labels).mean())
    assert accuracy > 2.5 / len(names), f"accuracy {accuracy:.2f} not above chance ({1 / len(names):.2f})"


def test_eurosat_mosaic_class_map_equals_per_image_predictions(tmp_path, eurosat):
    clf, names, images, _ = eurosat
    rows, cols = 6, 9
    rng = np.random.default_rng(4)
    chosen = images[rng.choice(len(images), rows * cols, replace=False)]
    mosaic = chosen.reshape(rows, cols, 64, 64, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 64, cols * 64, 3)
    from rasterio.transform import from_origin

    transform = from_origin(399960.0, 5900040.0, 10.0, 10.0)
    profile = dict(driver="GTiff", width=cols * 64, height=rows * 64, count=3, dtype="uint8")
    profile.update(crs="EPSG:32632", transform=transform, tiled=True, blockxsize=128, blockysize=128)
    scene = tmp_path / "mosaic.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(np.moveaxis(mosaic, -1, 0))
    batch = rows * cols  # the scene's single batch holds the tiles in the same order as the stack
    result = clf.classify_scene(scene, batch=batch)
    expected, expected_scores = clf.predict(chosen)
    assert result.n_skipped == 0
    np.testing.assert_array_equal(result.class_map, expected.reshape(rows, cols))
    np.testing.assert_array_equal(result.scores, expected_scores.reshape(rows, cols))
    one_by_one = np.array([clf.predict(image)[0][0] for image in chosen])  # each image on its own
    np.testing.assert_array_equal(result.class_map, one_by_one.reshape(rows, cols))
    # a different batch size gives the same classes (scores may differ in the last float bits)
    np.testing.assert_array_equal(clf.classify_scene(scene, batch=7).class_map, result.class_map)
    out = write_class_map(result, tmp_path / "classes.tif")
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32632
        assert ds.transform == transform @ transform.scale(64)
        assert json.loads(ds.tags()["class_names"]) == list(names)
        assert [ds.tags(1)[f"CLASS_{i}"] for i in range(len(names))] == list(names)
        np.testing.assert_array_equal(ds.read(1), result.class_map)


@pytest.mark.skipif(not LANDSAT.is_file(), reason=f"{LANDSAT} absent")
def test_landsat_collar_tiles_are_skipped(eurosat):
    clf = eurosat[0]
    result = clf.classify_scene(LANDSAT)
    with rasterio.open(LANDSAT) as ds:
        data = ds.read()
    nodata = (data == 0).all(axis=0)  # [H, W]
    g = result.grid
    expected_skip = np.zeros((g.n_rows, g.n_cols), dtype=bool)
    for row, col, w in g.windows():
        expected_skip[row, col] = nodata[w.y0 : w.y1, w.x0 : w.x1].mean() > 0.5
    np.testing.assert_array_equal(result.class_map == SKIPPED, expected_skip)
    assert 0.15 < expected_skip.mean() < 0.5  # the collar is about 32 % of the pixels
    assert result.class_map[0, 0] == SKIPPED and result.class_map[g.n_rows // 2, g.n_cols // 2] != SKIPPED
    assert result.georeferenced and result.crs_wkt is not None


@pytest.mark.skipif(not NAIP.is_file(), reason=f"{NAIP} absent")
def test_naip_four_bands_classified_from_rgb(eurosat):
    clf = eurosat[0]
    result = clf.classify_scene(NAIP, batch=16)
    assert "RGB from bands [1, 2, 3]" in result.description
    assert result.n_skipped == 0 and result.class_map.shape == (723 // 64 + 1, 934 // 64 + 1)
    from rasterio.windows import Window

    with rasterio.open(NAIP) as ds:
        assert ds.count == 4
        w = result.grid.window(3, 5)
        rgb = np.moveaxis(ds.read([1, 2, 3], window=Window(w.x0, w.y0, w.width, w.height)), 0, -1)
    assert clf.predict(rgb)[0][0] == result.class_map[3, 5]
    other = clf.classify_scene(NAIP, bands=(4, 1, 2))  # another band choice changes the input
    assert other.description.endswith("[4, 1, 2]")
