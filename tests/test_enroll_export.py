"""Enrolment agrees with export bit for bit: re-enrolling each class of an exported head from that
class's own training images (``Classifier.enroll(name, pixels, replace=True)``) gives exactly the
prototype export wrote. A tiny conv4 run on the synthetic set (trainer + export: torch), hence slow."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:the SVM part:UserWarning")]


def test_re_enrolling_the_training_images_reproduces_export_prototypes(tmp_path):
    from rfmml.export.cli import main as export
    from rfmml.runtime.classifier import Classifier
    from rfmml.trainer.cli import main as train
    from rfmml.trainer.data import load_part
    from rfmml.trainer.run import load_run

    run_dir = tmp_path / "run"
    argv = ["--out", str(run_dir), "--ret-episodes", "4", "--acf-episodes", "2", "--val-every", "2"]
    assert train([*argv, "--no-progress"]) == 0
    assert export(["--run", str(run_dir), str(tmp_path / "model.onnx"), "--no-progress"]) == 0
    run = load_run(run_dir)
    images, labels = (part.numpy() for part in load_part(run.split, "train", run.config.image_size))
    clf = Classifier.load(tmp_path / "model.onnx")
    for index, name in enumerate(clf.class_names):
        own = images[labels == index]  # in the split's order, the order export summed them in
        enrolled = clf.enroll(name, own, replace=True)
        assert enrolled.head.train_counts[index] == len(own) == clf.head.train_counts[index]
        np.testing.assert_array_equal(enrolled.head.prototypes[index], clf.head.prototypes[index])
