"""rfmml-enroll on real EuroSAT tiles: classes enrolled from 5 tiles each are predicted for their own
held-out tiles well above chance, and the known classes' predictions on their tiles move only where an
enrolled class takes them.

The model is the contract "meanstd" graph (per-channel means and standard deviations: no training, no
torch), so the test is fast and deterministic; the 6 "known" classes get export's prototypes (the
float32 mean of 10 tiles' embeddings), the 4 others are enrolled through the command line.
Measured with these files (sorted names; tiles 0-4 enrolled, 10-59 held out): the enrolled
PermanentCrop / Residential / River / SeaLake 0.08 / 0.46 / 0.38 / 0.40 correct (mean 0.33, chance
0.10); all 10 classes 0.40. The floors (2.5x and 3x chance) leave room.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import EUROSAT, build_stats_model, write_head

from rfmml.runtime.artifact import load_head
from rfmml.runtime.classifier import Classifier
from rfmml.runtime.enroll_cli import main
from rfmml.runtime.enroll_tiles import mean_prototype
from rfmml.runtime.imageio import load_tile

pytestmark = pytest.mark.skipif(not EUROSAT.is_dir(), reason=f"real EuroSAT images not found at {EUROSAT}")
SIZE = (64, 64)
SHOTS = 5
HELD_OUT = slice(10, 60)
CHANCE = 0.1


def _pixels(paths: list[Path]) -> np.ndarray:
    return np.stack([load_tile(path, SIZE).pixels for path in paths])


def test_enrolled_eurosat_classes_are_predicted_well_above_chance(tmp_path):
    classes = sorted(p.name for p in EUROSAT.iterdir() if p.is_dir())
    assert len(classes) == 10
    known, unseen = classes[:6], classes[6:]
    files = {name: sorted((EUROSAT / name).iterdir())[:60] for name in classes}
    model = build_stats_model(tmp_path / "model.onnx", SIZE, stats="meanstd")
    write_head(model, np.zeros((len(known), 6), np.float32), tuple(known), input_size=SIZE)
    clf = Classifier.load(model)
    prototypes = np.stack([mean_prototype(clf.embed(_pixels(files[name][:10]))) for name in known])
    write_head(model, prototypes, tuple(known), input_size=SIZE)  # what export would have written
    argv = ["--model", str(model), "--out", str(tmp_path / "enrolled.npz")]
    for name in unseen:
        folder = tmp_path / "tiles" / name
        folder.mkdir(parents=True)
        for path in files[name][:SHOTS]:
            (folder / path.name).symlink_to(path)
        argv += ["--add", name, str(folder)]
    assert main(argv) == 0
    assert load_head(tmp_path / "enrolled.npz").class_names == (*known, *unseen)
    original, enrolled = Classifier.load(model), Classifier.load(model, tmp_path / "enrolled.npz")
    accuracy = {}
    for index, name in enumerate(enrolled.class_names):
        pixels = _pixels(files[name][HELD_OUT])
        labels, _ = enrolled.predict(pixels)
        accuracy[name] = float((labels == index).mean())
        if name in known:  # a known class's tile changes its prediction only to an enrolled class
            changed = labels != original.predict(pixels)[0]
            assert np.all(labels[changed] >= len(known)), name
    assert np.mean([accuracy[name] for name in unseen]) > 2.5 * CHANCE, accuracy
    assert np.mean(list(accuracy.values())) > 3 * CHANCE, accuracy
