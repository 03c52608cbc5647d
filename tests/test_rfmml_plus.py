"""RF-MML+ (issue 11): each post-hoc head candidate equals its formula on a hand-made batch, and
``--method rfmml-plus`` (RET + ACF, its head budget, the calibrated Proto head) trains end to end
(synthetic; real EuroSAT in head mode when present) and exports with runtime parity. The calibrated
head itself: tests/test_proto_calibration.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from export_checks import assert_runtime_matches_eval_json

from rfmml.runtime.heads import log_prior, proto_space
from rfmml.trainer.cli import main
from rfmml.trainer.posthoc_heads import (
    calibrate_prototypes,
    ensemble_logits,
    prior_corrected_logits,
    zscore,
)
from rfmml.trainer.proto_calibration import choose_tau


def test_log_prior_is_log_share_and_finite_for_an_empty_class() -> None:
    np.testing.assert_allclose(log_prior([3, 1, 0]), np.log([0.75, 0.25, 0.125]))


def test_post_hoc_logits_subtract_tau_log_prior() -> None:
    emb = np.array([[0.0, 0.0]])
    prototypes = np.array([[1.0, 0.0], [0.0, 2.0]])
    log_pi = np.log([0.9, 0.1])
    got = prior_corrected_logits(emb, prototypes, "euclidean", log_pi, tau=0.5)
    np.testing.assert_allclose(got, [[-1.0 - 0.5 * math.log(0.9), -2.0 - 0.5 * math.log(0.1)]])


def test_choose_tau_maximises_balanced_validation_accuracy() -> None:
    # Two images per class; the minority class (1) loses both at tau = 0 by 0.5 and 1.5 nats.
    logits = np.array([[0.0, -3.0], [0.0, -2.0], [0.0, -0.5], [0.0, -1.5]])
    labels = np.array([0, 0, 1, 1])
    log_pi = np.log([0.9, 0.1])  # correction: + tau * log(9) = 2.197 tau in favour of class 1
    tau, scores = choose_tau(logits, labels, log_pi, grid=(0.0, 0.5, 0.75, 1.0))
    assert scores == {0.0: 0.5, 0.5: 0.75, 0.75: 1.0, 1.0: 0.75}
    assert tau == 0.75


def test_proto_space_subtracts_the_centre_then_normalises() -> None:
    got = proto_space(np.array([[4.0, 5.0], [1.0, 1.0]]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0]])  # (3, 4) / 5; the centre itself stays 0


def test_ensemble_is_the_sum_of_row_zscores() -> None:
    proto = np.array([[-1.0, -2.0, -3.0]])  # mean -2, population std sqrt(2/3)
    svm = np.array([[0.0, 3.0, 0.0]])  # mean 1, population std sqrt(2)
    s = math.sqrt(2 / 3)
    np.testing.assert_allclose(zscore(proto), [[1 / s, 0.0, -1 / s]])
    expected = [[1 / s - 1 / math.sqrt(2), 2 / math.sqrt(2), -1 / s - 1 / math.sqrt(2)]]
    np.testing.assert_allclose(ensemble_logits(proto, svm), expected)


def test_distribution_calibration_of_a_minority_prototype() -> None:
    # majority classes 0, 1, 2 at (0, 0), (4, 0), (10, 0); minority class 3 at (5, 3): nearest 1, 0.
    prototypes = np.array([[0.0, 0.0], [4.0, 0.0], [10.0, 0.0], [5.0, 3.0]])
    covariances = np.stack([np.eye(2) * v for v in (1.0, 3.0, 5.0, 100.0)])
    means, covs = calibrate_prototypes(prototypes, covariances, [3], [0, 1, 2], k=2, alpha=0.5)
    np.testing.assert_allclose(means[3], [(5 + 4 + 0) / 3, (3 + 0 + 0) / 3])
    np.testing.assert_allclose(covs[3], np.eye(2) * ((1.0 + 3.0) / 2 + 0.5))
    np.testing.assert_array_equal(means[:3], prototypes[:3])  # majority classes keep theirs
    np.testing.assert_array_equal(covs[:3], covariances[:3])


def test_rfmml_plus_trains_rfmml_phases_and_reports_its_calibrated_head(tmp_path: Path) -> None:
    """rfmml-plus = rfmml's phases and loss: the same episodes and losses as rfmml; its head (and so its
    checkpoint choice) is the calibrated one, whose tau eval.json reports."""
    flags = ["--ret-episodes", "10", "--acf-episodes", "10", "--val-every", "5", "--log-every", "5"]
    flags += ["--no-progress", "--svm-c", "1", "--no-cache"]
    logs = {}
    for method in ("rfmml", "rfmml-plus"):
        out = tmp_path / method
        assert main([*flags, "--method", method, "--out", str(out)]) == 0
        logs[method] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    episodes = {m: [(r["phase"], r["loss"]) for r in logs[m] if r["kind"] == "episode"] for m in logs}
    assert episodes["rfmml"] == episodes["rfmml-plus"] and {p for p, _ in episodes["rfmml"]} == {"ret", "acf"}
    result = json.loads((tmp_path / "rfmml-plus" / "eval.json").read_text())
    config = json.loads((tmp_path / "rfmml-plus" / "config.json").read_text())
    assert result["method"] == "rfmml-plus" and result["proto_params"]["calibrated"] is True
    assert config["proto_head"] == "calibrated"
    assert "proto_params" not in json.loads((tmp_path / "rfmml" / "eval.json").read_text())


@pytest.mark.slow
def test_rfmml_plus_on_real_eurosat_head(tmp_path: Path, eurosat_root: Path) -> None:
    out = tmp_path / "run"
    subset = ["--train-per-class", "20", "--val-per-class", "5", "--test-per-class", "20"]
    subset += ["--minority-classes", "4", "--minority-shots", "5", "--image-size", "64", "--svm-c", "1"]
    budget = ["--ret-episodes", "200", "--acf-episodes", "50", "--val-every", "50", "--log-every", "50"]
    flags = ["--data", str(eurosat_root), "--method", "rfmml-plus", *subset, *budget, "--no-progress"]
    assert main([*flags, "--no-cache", "--out", str(out)]) == 0
    config, result = (
        json.loads((out / "config.json").read_text()),
        json.loads((out / "eval.json").read_text()),
    )
    assert (config["method"], config["tune"], config["embed_dim"]) == ("rfmml-plus", "head", 256)
    assert config["proto_head"] == "calibrated" and config["acf_lr"] == config["ret_lr"] == 1e-5
    assert result["method"] == "rfmml-plus"
    assert result["proto"]["overall"] >= 0.5 and result["proto"]["minority"] is not None, result


def test_rfmml_plus_exports_with_runtime_parity(tmp_path: Path) -> None:
    """The exported pair of an rfmml-plus run (a version-2 head) scores the test split as eval.json
    says (calibrated Proto and SVM heads), through the runtime's Classifier."""
    from rfmml.export.cli import main as export

    run = tmp_path / "run"
    flags = ["--method", "rfmml-plus", "--ret-episodes", "8", "--acf-episodes", "4", "--val-every", "4"]
    assert main([*flags, "--no-progress", "--no-cache", "--svm-c", "1", "--out", str(run)]) == 0
    model = tmp_path / "model.onnx"
    assert export(["--run", str(run), str(model), "--no-progress"]) == 0
    assert_runtime_matches_eval_json(run, model)
