"""Heads once: the trainer fits the runtime's Head and scores with the runtime's scorer, so eval.json,
export and inference see the same predictions, and a saved head scores exactly like the fitted one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rfmml.runtime.artifact import load_head, save_head
from rfmml.runtime.heads import HeadScorer, pairwise_distance, proto_logits, svm_logits
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.evaluate import evaluate_heads
from rfmml.trainer.heads import SvmSettings, fit_head, predict

CLASSES = ["a", "b", "c"]


class MeanColour(torch.nn.Module):
    """A deterministic 'network': the mean R, G, B of an image, scaled to [0, 1] — [B, 3]."""

    embedding_dim = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(1, 2)) / 255.0


def _images(labels: np.ndarray, seed: int) -> torch.Tensor:
    """uint8 [N, 4, 4, 3]: class k is mostly colour channel k, with noise."""
    rng = np.random.default_rng(seed)
    base = np.eye(3)[labels] * 200 + 20
    pixels = base[:, None, None, :] + rng.normal(0, 25, (len(labels), 4, 4, 3))
    return torch.from_numpy(np.clip(pixels, 0, 255).astype(np.uint8))


def _part(counts: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = np.repeat(np.arange(3), counts)
    return _images(labels, seed), torch.from_numpy(labels)


def test_one_distance_hand_computed():
    e = np.array([[0.0, 0.0], [3.0, 4.0]])
    p = np.array([[0.0, 0.0], [6.0, 8.0]])
    assert pairwise_distance(e, p, "euclidean").tolist() == [[0.0, 10.0], [5.0, 5.0]]
    assert pairwise_distance(e, p, "sqeuclidean").tolist() == [[0.0, 100.0], [25.0, 25.0]]
    assert proto_logits(e, p, "euclidean").dtype == np.float64
    with pytest.raises(ValueError, match="unknown distance"):
        pairwise_distance(e, p, "cosine")
    # SVM: L2-normalised first when asked: (3, 4) -> (0.6, 0.8)
    coef, intercept = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.5, 0.0])
    assert svm_logits(e[1:], coef, intercept, True).tolist() == [[1.1, 0.8]]
    assert svm_logits(e[1:], coef, intercept, False).tolist() == [[3.5, 4.0]]


def test_embeddings_of_another_dimension_are_a_one_line_artifact_error():
    from rfmml.runtime.errors import ArtifactError

    emb = np.eye(3, dtype=np.float32)
    head = fit_head(emb, [0, 1, 2], CLASSES, CLASSES, distance="euclidean", input_size=(4, 4))
    with pytest.raises(ArtifactError, match=r"shape \(2, 4\) but the head expects \[batch, 3\]"):
        HeadScorer(head, "proto").logits(np.zeros((2, 4), np.float32))


def test_saved_head_scores_exactly_like_the_fitted_one(tmp_path):
    train_images, train_labels = _part([20, 20, 5], seed=0)
    emb = MeanColour()(train_images)
    head = fit_head(emb, train_labels, CLASSES, ["a", "b"], distance="sqeuclidean", input_size=(4, 4),
                    svm=SvmSettings(c=0.5))  # fmt: skip
    save_head(tmp_path / "h.npz", head)
    loaded = load_head(tmp_path / "h.npz")
    test_emb = MeanColour()(_part([10, 10, 10], seed=1)[0]).numpy()
    for kind in ("proto", "svm"):
        np.testing.assert_array_equal(
            HeadScorer(loaded, kind).logits(test_emb), HeadScorer(head, kind).logits(test_emb)
        )
        assert predict(loaded, test_emb, kind).tolist() == predict(head, test_emb, kind).tolist()
    assert loaded.train_counts.tolist() == [20, 20, 5] and loaded.majority.tolist() == [True, True, False]


def test_evaluate_heads_reports_what_the_runtime_predicts():
    parts = {"train": _part([20, 20, 5], 0), "val": _part([5, 5, 5], 1), "test": _part([10, 10, 10], 2)}
    config = TrainConfig(out="unused", svm_c=(0.1, 1.0, 10.0), batch_size=7, image_size=4, proto_head="plain")
    result = evaluate_heads(MeanColour(), parts, CLASSES, ["a", "b"], config, torch.device("cpu"))

    train_emb = MeanColour()(parts["train"][0])
    test_emb, test_labels = MeanColour()(parts["test"][0]).numpy(), parts["test"][1].numpy()
    c = result["svm_params"]["C"]
    assert c in config.svm_c and set(result["svm_params"]["val_overall_by_C"]) == {"0.1", "1.0", "10.0"}
    head = fit_head(train_emb, parts["train"][1], CLASSES, ["a", "b"], distance=config.distance,
                    input_size=(4, 4), svm=SvmSettings.from_config(config, c))  # fmt: skip
    for kind in ("proto", "svm"):
        pred = HeadScorer(head, kind).logits(test_emb).argmax(1)
        assert result[kind]["overall"] == pytest.approx(np.mean(pred == test_labels))
        confusion = np.asarray(result["confusion"][kind])
        assert confusion.sum(1).tolist() == [10, 10, 10]  # rows: the true class
        assert np.trace(confusion) == np.sum(pred == test_labels)
    assert result["n_test"] == {"a": 10, "b": 10, "c": 10}
    assert math.isclose(result["proto"]["minority"], result["proto"]["per_class"]["c"])
