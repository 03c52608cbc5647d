"""The calibrated Proto head (issue 11, ``--proto-head calibrated``, rfmml-plus's head): its formula in
the runtime, its fit in the trainer on hand-made numbers, the head file's format version 2 (old heads
unchanged), enrolment into a calibrated head, and export parity of a calibrated run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_checks import assert_runtime_matches_eval_json
from runtime_fixtures import random_head

from rfmml.runtime.artifact import ArtifactError, Head, head_arrays, load_head, save_head
from rfmml.runtime.heads import HeadScorer, prior_bias, proto_space
from rfmml.trainer.cli import main as train
from rfmml.trainer.proto_calibration import calibrate_proto


def _calibrated_head(tau: float = 0.5) -> Head:
    return Head(
        class_names=("a", "b"),
        input_size=(8, 8),
        distance="euclidean",
        prototypes=np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
        majority=np.array([True, False]),
        train_counts=np.array([3, 1]),
        proto_centre=np.array([1.0, 1.0], np.float32),
        proto_tau=tau,
    )


def test_runtime_scores_a_calibrated_head_by_its_formula() -> None:
    """e = (4, 5), centre (1, 1): e' = (0.6, 0.8); d = (sqrt 0.8, sqrt 0.4); counts (3, 1), tau 0.5:
    bias = -0.5 log(0.75, 0.25) = (0.143841, 0.693147)."""
    logits = HeadScorer(_calibrated_head(), "proto").logits(np.array([[4.0, 5.0]]))
    np.testing.assert_allclose(logits, [[-0.894427 + 0.143841, -0.632456 + 0.693147]], atol=1e-6)
    np.testing.assert_allclose(prior_bias([3, 1], 0.0), [0.0, 0.0])
    plain = HeadScorer(_calibrated_head(tau=0.0), "proto").logits(np.array([[4.0, 5.0]]))
    np.testing.assert_allclose(plain, [[-0.894427, -0.632456]], atol=1e-6)
    np.testing.assert_allclose(proto_space(np.array([[4.0, 5.0]]), None), [[4.0, 5.0]])


def test_calibration_fits_centre_prototypes_and_tau_on_hand_made_embeddings() -> None:
    """Centre (2, 1); class 0's unit vectors (0, -1), (2, -1)/sqrt 5 -> mean (0.447214, -0.723607).
    Validation (2.5, 0.8) of the rare class 1 needs tau > 1.966 to win; (3, 0) of class 0 keeps its
    class up to tau 2.51: of the grid, 2.0 alone gets both right."""
    train = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]], np.float32)
    val = np.array([[3.0, 0.0], [2.5, 0.8]], np.float32)
    cal = calibrate_proto(train, [0, 0, 1], val, [0, 1], 2, "euclidean")
    np.testing.assert_allclose(cal.centre, [2.0, 1.0])
    assert cal.tau == 2.0
    assert cal.val_by_tau[0.0] == 0.5 and cal.val_by_tau[1.5] == 0.5 and cal.val_by_tau[2.0] == 1.0
    no_val = calibrate_proto(train, [0, 0, 1], val[:0], [], 2, "euclidean")
    assert no_val.tau == 0.0 and no_val.val_by_tau == {}


def test_head_file_version_2_round_trips_and_plain_heads_stay_version_1(tmp_path: Path) -> None:
    head = _calibrated_head()
    assert int(head_arrays(head)["format_version"]) == 2
    save_head(tmp_path / "h.npz", head)
    loaded = load_head(tmp_path / "h.npz")
    np.testing.assert_array_equal(loaded.proto_centre, [1.0, 1.0])
    assert loaded.proto_tau == 0.5 and loaded.calibrated
    plain = random_head(3, 4, True)
    arrays = head_arrays(plain)
    assert int(arrays["format_version"]) == 1 and "proto_centre" not in arrays and "proto_tau" not in arrays
    assert not plain.calibrated


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"format_version": np.array(1)}, "format_version 1 with proto_centre, proto_tau"),
        ({"proto_tau": np.array(-1.0, np.float32)}, "proto_tau must be finite and >= 0"),
        ({"proto_centre": np.array([np.nan, 0.0], np.float32)}, "non-finite proto_centre"),
        ({"proto_centre": np.zeros(3, np.float32)}, r"proto_centre of shape \(3,\), expected \(2,\)"),
    ],
)
def test_malformed_calibration_is_refused_in_one_line(tmp_path: Path, changes: dict, match: str) -> None:
    arrays = {**head_arrays(_calibrated_head()), **changes}
    np.savez(tmp_path / "h.npz", **arrays)
    with pytest.raises(ArtifactError, match=match) as caught:
        load_head(tmp_path / "h.npz")
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_calibrated_run_reports_its_tau_and_exports_with_runtime_parity(tmp_path: Path) -> None:
    """--proto-head calibrated on any method: eval.json says tau, the exported head is version 2 and
    the runtime scores the test split exactly as eval.json says."""
    from rfmml.export.cli import main as export

    run = tmp_path / "run"
    flags = ["--method", "protonet", "--proto-head", "calibrated", "--ret-episodes", "8", "--val-every", "4"]
    assert train([*flags, "--no-progress", "--no-cache", "--svm-c", "1", "--out", str(run)]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["proto_params"]["calibrated"] is True
    assert result["proto_params"]["tau"] in (0, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2)
    model = tmp_path / "model.onnx"
    assert export(["--run", str(run), str(model), "--no-progress"]) == 0
    head = load_head(model.with_suffix(".npz"))
    assert head.calibrated and head.proto_centre is not None
    assert head.metadata["proto"]["tau"] == head.proto_tau
    assert_runtime_matches_eval_json(run, model)


def test_enrolling_into_a_calibrated_head_takes_the_mean_in_its_space(tmp_path: Path) -> None:
    """A class added to a calibrated head gets the mean of its centred, unit embeddings (the space
    the head's prototypes live in); centre and tau are kept, the bias follows the new counts."""
    import dataclasses

    from PIL import Image
    from runtime_fixtures import build_stats_model, write_head

    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.enroll_cli import main as enroll
    from rfmml.runtime.enroll_tiles import mean_prototype
    from rfmml.runtime.imageio import load_tile

    model = build_stats_model(tmp_path / "m.onnx", (32, 32), stats="meanstd")
    head_path = write_head(model, np.eye(2, 6, dtype=np.float32), ("a", "b"))
    centre = np.linspace(0.1, 0.6, 6).astype(np.float32)
    save_head(head_path, dataclasses.replace(load_head(head_path), proto_centre=centre, proto_tau=0.25))
    folder = tmp_path / "purple"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = np.clip(np.array([150, 60, 200]) + rng.integers(-25, 26, (40, 40, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"t{i}.png")
    out = tmp_path / "enrolled.npz"
    assert enroll(["--model", str(model), "--add", "purple", str(folder), "--out", str(out)]) == 0
    head = load_head(out)
    embeddings = Classifier.load(model).embed(
        np.stack([load_tile(p, (32, 32)).pixels for p in sorted(folder.iterdir())])
    )
    np.testing.assert_array_equal(head.prototypes[2], mean_prototype(proto_space(embeddings, centre)))
    np.testing.assert_array_equal(head.proto_centre, centre)
    assert head.proto_tau == 0.25 and head.train_counts.tolist() == [10, 10, 4]
