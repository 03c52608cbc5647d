"""Checks shared by the export tests: the runtime, given an exported pair, reproduces the run's
eval.json (torch and the trainer are imported inside the functions, as the tests do)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def run_test_part(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """The run's test images uint8 [N, S, S, 3] and labels int64 [N], decoded as training decodes."""
    from rfmml.trainer.data import load_part
    from rfmml.trainer.run import load_run

    loaded = load_run(run)
    images, labels = load_part(loaded.split, "test", loaded.config.image_size)
    return images.numpy(), labels.numpy()


def assert_runtime_matches_eval_json(run: Path, model: Path, providers: str = "auto") -> None:
    """onnxruntime's test accuracy under both heads equals eval.json's (within half a point: fp32
    embeddings of two engines may move a near tie)."""
    from rfmml.runtime.classifier import Classifier

    images, labels = run_test_part(run)
    expected = json.loads((run / "eval.json").read_text())
    for head in ("proto", "svm"):
        predicted, _ = Classifier.load(model, head=head, providers=providers).predict(images)
        accuracy = float(np.mean(predicted == labels))
        assert accuracy == pytest.approx(expected[head]["overall"], abs=0.005), (head, accuracy)
