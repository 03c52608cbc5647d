"""RF-MML+ (issue 11): each prior-corrected loss / score equals its formula on a hand-made batch, and
``--method rfmml-plus`` trains end to end (synthetic; real EuroSAT in head mode when present)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from export_checks import assert_runtime_matches_eval_json

from rfmml.runtime.heads import log_prior, proto_space
from rfmml.trainer.cli import main
from rfmml.trainer.episode import episode_loss
from rfmml.trainer.proto_calibration import choose_tau
from rfmml.trainer.rfmml_plus import (
    calibrate_prototypes,
    ensemble_logits,
    prior_corrected_episode_loss,
    prior_corrected_logits,
    zscore,
)


def test_log_prior_is_log_share_and_finite_for_an_empty_class() -> None:
    np.testing.assert_allclose(log_prior([3, 1, 0]), np.log([0.75, 0.25, 0.125]))


def test_episode_loss_is_the_logit_adjusted_cross_entropy() -> None:
    # K = 2 classes, N = 1 shot: prototypes (0, 0) and (3, 4); one query (3, 0) of class 1.
    emb = torch.tensor([[0.0, 0.0], [3.0, 4.0], [3.0, 0.0]])
    labels = torch.tensor([1])
    prior = torch.log(torch.tensor([0.9, 0.1]))
    loss, acc = prior_corrected_episode_loss(emb, 2, 1, labels, "euclidean", prior, tau=1.0)
    z0, z1 = -3.0 + math.log(0.9), -4.0 + math.log(0.1)  # -d + tau * log pi
    expected = -(z1 - math.log(math.exp(z0) + math.exp(z1)))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(acc) == 0.0  # uncorrected argmax(-d): class 0 (distance 3 < 4)
    # tau = 0 is ProtoNet's / RF-MML's loss exactly
    plain = prior_corrected_episode_loss(emb, 2, 1, labels, "euclidean", prior, tau=0.0)
    assert torch.equal(plain[0], episode_loss(emb, 2, 1, labels, "euclidean")[0])


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


@pytest.mark.parametrize("tau", ["0", "1"])
def test_rfmml_plus_trains_on_synthetic(tmp_path: Path, tau: str) -> None:
    out = tmp_path / "run"
    flags = ["--method", "rfmml-plus", "--la-tau", tau, "--ret-episodes", "10", "--acf-episodes", "10"]
    flags += ["--val-every", "5", "--log-every", "5", "--no-progress", "--svm-c", "1", "--no-cache"]
    assert main([*flags, "--out", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["method"] == "rfmml-plus" and {"proto", "svm"} <= set(result)
    phases = [json.loads(line)["phase"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert set(phases) == {"ret", "acf"}


def test_rfmml_plus_tau_zero_is_rfmml(tmp_path: Path) -> None:
    """At tau 0 the loss is RF-MML's: same episodes, same weights, same eval.json numbers."""
    flags = ["--ret-episodes", "10", "--acf-episodes", "10", "--val-every", "5", "--log-every", "5"]
    flags += ["--no-progress", "--svm-c", "1", "--no-cache"]
    evals = []
    for method in ("rfmml", "rfmml-plus"):
        out = tmp_path / method
        extra = ["--la-tau", "0"] if method == "rfmml-plus" else ["--proto-head", "calibrated"]
        assert main([*flags, *extra, "--method", method, "--out", str(out)]) == 0
        evals.append(json.loads((out / "eval.json").read_text()))
    assert evals[0]["proto"] == evals[1]["proto"] and evals[0]["svm"] == evals[1]["svm"]


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
    assert result["method"] == "rfmml-plus"
    assert result["proto"]["overall"] >= 0.5 and result["proto"]["minority"] is not None, result


def test_rfmml_plus_exports_with_runtime_parity(tmp_path: Path) -> None:
    """rfmml-plus changes the training loss only: the exported pair scores the test split as
    eval.json says (Proto and SVM heads), through the runtime's Classifier."""
    from rfmml.export.cli import main as export

    run = tmp_path / "run"
    flags = ["--method", "rfmml-plus", "--ret-episodes", "8", "--acf-episodes", "4", "--val-every", "4"]
    assert main([*flags, "--no-progress", "--no-cache", "--svm-c", "1", "--out", str(run)]) == 0
    model = tmp_path / "model.onnx"
    assert export(["--run", str(run), str(model), "--no-progress"]) == 0
    assert_runtime_matches_eval_json(run, model)
