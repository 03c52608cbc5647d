"""Export of runs in every tuning regime: the trainable head is part of the ONNX graph (contract
unchanged: uint8 NHWC images -> float32 embeddings), parity <= 1e-4, and the runtime reproduces the
run's eval.json (so training on cached features measured what the exported network computes)."""

from __future__ import annotations

import pytest
from export_checks import assert_runtime_matches_eval_json

from rfmml.export.cli import main as export
from rfmml.trainer.cli import main as train

TINY = ["--image-size", "16", "--ret-episodes", "12", "--acf-episodes", "6", "--val-every", "6"]
TINY += ["--no-progress", "--svm-c", "1", "--no-cache"]


@pytest.mark.parametrize(
    ("flags", "dim"),
    [
        (["--tune", "head"], 256),
        (["--tune", "head", "--embed-dim", "24"], 24),
        (["--tune", "last", "--embed-dim", "32"], 32),
        (["--method", "frozen"], 64),
    ],
)
def test_export_of_each_regime(tmp_path, flags, dim):
    from rfmml.runtime.artifact import load_head

    run, model = tmp_path / "run", tmp_path / "model.onnx"
    assert train([*TINY, *flags, "--out", str(run)]) == 0
    assert export(["--run", str(run), str(model), "--no-progress"]) == 0
    head = load_head(model.with_suffix(".npz"))
    parity = head.metadata["parity"]
    assert parity["passed"] and parity["max_rel_diff"] <= 1e-4
    assert head.embedding_dim == dim  # the head's projection is inside the graph

    assert_runtime_matches_eval_json(run, model)
