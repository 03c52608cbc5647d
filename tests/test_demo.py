"""rfmml-demo, the README's main job: train on the embedded default, export, classify a scene."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rfmml.export.demo import build_scene, main, scene_labels


def test_scene_labels_cover_every_class_in_patches() -> None:
    labels = scene_labels(24, 32, 8, seed=0)
    assert labels.shape == (24, 32)
    assert set(np.unique(labels).tolist()) == set(range(8))
    # patches, not noise: most cells share their class with the right-hand neighbour
    assert (labels[:, 1:] == labels[:, :-1]).mean() > 0.8


def test_build_scene_places_one_tile_per_cell() -> None:
    labels = np.array([[0, 7], [3, 3]])
    scene = build_scene(labels, tile=16, seed=0)
    assert scene.shape == (32, 32, 3) and scene.dtype == np.uint8
    # the two cells of class 3 are different renderings (fresh tiles, not copies)
    assert not np.array_equal(scene[16:, :16], scene[16:, 16:])


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("class-map accuracy:"))
    accuracy = float(line.split()[2].rstrip("%"))
    # chance is 12.5 %; measured 89.6 % (seed 0, lite0 --tune head, the default rfmml-plus; rfmml: 90.6 %)
    assert accuracy > 70.0, line
    for name in ("model.onnx", "model.npz", "classmap.csv", "quicklook.png", "run/eval.json"):
        assert (tmp_path / "demo" / name).is_file(), name
    assert (tmp_path / "demo" / "classmap.tif").is_file() or (tmp_path / "demo" / "classmap.png").is_file()
    _assert_wrong_tiles_panel(tmp_path / "demo" / "quicklook.png", accuracy)


def _assert_wrong_tiles_panel(path: Path, accuracy: float) -> None:
    """Three panels side by side (scene | class map | wrong tiles) of the 4:3 scene, the wrong tiles
    in red: about as many red cells as the printed accuracy leaves wrong."""
    from PIL import Image

    from rfmml.runtime.quicklook import WRONG_COLOUR

    picture = np.asarray(Image.open(path).convert("RGB"))
    height, width = picture.shape[:2]
    assert width > 3 * height, picture.shape  # two panels and a legend would be ~2.7 heights wide
    red = np.all(picture == WRONG_COLOUR, axis=-1)
    panel = red[:, 2 * width // 3 : width - width // 20]  # the third panel, without the legend
    wrong_share = red.sum() / max(1, (picture[:, : width // 3] != 255).any(-1).sum())
    assert red.any() and panel.any()
    assert abs(wrong_share - (1 - accuracy / 100)) < 0.1, (wrong_share, accuracy)
