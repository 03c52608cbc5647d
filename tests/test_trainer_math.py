"""Prototypes, distances, the loss, heads, augmentation and the split protocol against hand-computed
numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rfmml.runtime.heads import HeadScorer, proto_logits, svm_logits
from rfmml.trainer.augment import Augmenter, dihedral_index
from rfmml.trainer.episode import episode_loss, episode_prototypes, pairwise_distance
from rfmml.trainer.errors import InputError
from rfmml.trainer.heads import SvmSettings, accuracy_report, fit_head, fit_prototypes, fit_svm, predict
from rfmml.trainer.split import make_split


class FirstTwoPixels(torch.nn.Module):
    """A tiny deterministic 'network': the R and G values of a 1x1 image, as floats."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.reshape(images.shape[0], -1)[:, :2].float()


# support: class 0 at (0, 0) and (2, 0) -> prototype (1, 0); class 1 at (0, 4), (0, 2) -> (0, 3)
# queries: (1, 1) of class 0, (0, 5) of class 1
PIXELS = torch.tensor([[0, 0, 9], [2, 0, 9], [0, 4, 9], [0, 2, 9], [1, 1, 9], [0, 5, 9]], dtype=torch.uint8)
IMAGES = PIXELS.view(6, 1, 1, 3)
QUERY_LABELS = torch.tensor([0, 1])


def test_prototypes_and_distances():
    emb = FirstTwoPixels()(IMAGES)
    protos = episode_prototypes(emb[:4], 2, 2)
    assert protos.tolist() == [[1.0, 0.0], [0.0, 3.0]]
    d = pairwise_distance(emb[4:], protos, "euclidean")
    expected = [[1.0, math.sqrt(5)], [math.sqrt(26), 2.0]]
    assert np.allclose(d.numpy(), expected, atol=1e-6)
    assert pairwise_distance(emb[4:], protos, "sqeuclidean").tolist() == [[1, 5], [26, 4]]


@pytest.mark.parametrize(
    "distance,expected", [("euclidean", 0.14957742086298126), ("sqeuclidean", 0.009074964098378322)]
)
def test_episode_loss_hand_computed(distance, expected):
    emb = FirstTwoPixels()(IMAGES)
    loss, acc = episode_loss(emb, 2, 2, QUERY_LABELS, distance)
    assert loss.item() == pytest.approx(expected, rel=1e-5)  # float32
    assert acc.item() == 1.0
    # a wrong label: loss = -log softmax of the other class
    loss, acc = episode_loss(emb, 2, 2, torch.tensor([1, 1]), "sqeuclidean")
    assert loss.item() == pytest.approx((math.log1p(math.exp(4)) + math.log1p(math.exp(-22))) / 2, rel=1e-6)
    assert acc.item() == 0.5


def test_loss_gradient_finite_at_zero_distance():
    emb = torch.zeros(3, 4, requires_grad=True)
    loss, _ = episode_loss(emb, 2, 1, torch.tensor([0]), "euclidean")
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_heads_prototypes_scores_and_report():
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1, 1])
    protos = fit_prototypes(emb, labels, 3)
    assert protos.dtype == torch.float32 and protos.tolist() == [[1.0, 0.0], [0.0, 3.0], [0.0, 0.0]]
    scores = proto_logits(torch.tensor([[1.0, 1.0]]), protos[:2], "sqeuclidean")  # the runtime's scorer
    assert scores.tolist() == [[-1.0, -5.0]]
    report = accuracy_report([0, 1, 1, 2], [0, 1, 0, 2], ["a", "b", "c"], majority=["a", "b"])
    assert report == {
        "overall": 0.75,
        "majority": 2 / 3,
        "minority": 1.0,
        "per_class": {"a": 0.5, "b": 1.0, "c": 1.0},
    }


def test_svm_head_separable_and_binary():
    rng = np.random.default_rng(0)
    centres = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]], np.float32)
    labels = np.repeat(np.arange(3), 20)
    emb = centres[labels] + rng.normal(0, 0.3, (60, 3)).astype(np.float32)
    coef, intercept = fit_svm(emb, labels, 3)
    assert coef.shape == (3, 3) and coef.dtype == np.float32 and intercept.shape == (3,)
    assert (svm_logits(emb, coef, intercept, True).argmax(1) == labels).all()
    coef2, inter2 = fit_svm(emb[:40], labels[:40], 2, l2_normalize=False)  # sklearn's binary case
    assert (svm_logits(emb[:40], coef2, inter2, False).argmax(1) == labels[:40]).all()
    np.testing.assert_array_equal(coef2[0], -coef2[1])  # one hyperplane, both signs


def test_fit_head_is_the_runtime_head():
    """The trainer fits exactly what inference loads: prototypes, SVM, majority mask, counts."""
    rng = np.random.default_rng(1)
    centres = np.array([[4, 0], [0, 4], [-4, 0]], np.float32)
    labels = np.array([0] * 10 + [1] * 10 + [2] * 4)
    emb = centres[labels] + rng.normal(0, 0.2, (24, 2)).astype(np.float32)
    head = fit_head(
        torch.from_numpy(emb),
        torch.from_numpy(labels),
        ["a", "b", "c"],
        ["a", "b"],
        distance="euclidean",
        input_size=(8, 8),
        svm=SvmSettings(c=1.0, class_weight="balanced", l2_normalize=True),
    )
    assert head.class_names == ("a", "b", "c") and head.input_size == (8, 8)
    assert head.majority.tolist() == [True, True, False] and head.train_counts.tolist() == [10, 10, 4]
    np.testing.assert_allclose(head.prototypes[2], emb[20:].mean(0), rtol=1e-6)
    assert head.svm_coef.shape == (3, 2) and head.svm_intercept.dtype == np.float32
    for kind in ("proto", "svm"):
        expected = HeadScorer(head, kind).logits(emb).argmax(1)
        assert predict(head, torch.from_numpy(emb), kind).tolist() == expected.tolist() == labels.tolist()
    assert not fit_head(
        emb, labels, ["a", "b", "c"], ["a"], distance="sqeuclidean", input_size=(8, 8)
    ).has_svm


def test_svm_class_absent_from_training_never_wins():
    emb = np.array([[1, 0], [1.1, 0], [0, 1], [0, 1.2]], np.float32)
    coef, intercept = fit_svm(emb, [0, 0, 2, 2], 3)
    assert intercept[1] == -np.inf and coef[1].tolist() == [0.0, 0.0]
    assert (svm_logits(emb, coef, intercept, True).argmax(1) == [0, 0, 2, 2]).all()


def test_confusion_matrix_rows_true_columns_predicted():
    from rfmml.trainer.evaluate import confusion_matrix

    assert confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 0, 2]), 4) == [
        [1, 1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 0],
    ]
    assert confusion_matrix(np.array([], int), np.array([], int), 2) == [[0, 0], [0, 0]]


def test_dihedral_augment_per_image():
    index = dihedral_index(3, "cpu")
    grid = torch.arange(9).view(3, 3)
    variants = {tuple(grid.reshape(-1)[index[t]].tolist()) for t in range(8)}
    assert len(variants) == 8  # all 8 symmetries, distinct
    images = torch.randint(
        0, 255, (64, 3, 3, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    out = Augmenter(3, "cpu")(images, torch.Generator().manual_seed(1))
    seen = set()
    for i in range(64):
        options = [torch.rot90(images[i], r, dims=(0, 1)) for r in range(4)]
        options += [o.flip(1) for o in options]
        matches = [t for t, o in enumerate(options) if torch.equal(o, out[i])]
        assert matches, f"image {i} is not a flip/rotation of its input"
        seen.add(matches[0])
    assert len(seen) == 8  # independent per image


def _eurosat_like_files(n: int = 1000) -> dict[str, list[str]]:
    names = [
        "AnnualCrop",
        "Forest",
        "HerbaceousVegetation",
        "Highway",
        "Industrial",
        "Pasture",
        "PermanentCrop",
        "Residential",
        "River",
        "SeaLake",
    ]
    return {c: sorted(f"{c}/{c}_{i}.jpg" for i in range(1, n + 1)) for c in names}


def test_split_protocol_matches_anchors():
    """ANCHORS.md's EuroSAT-LT: test 500, val 100, train 300, minority seed 0 = these four, 5 shots."""
    files = _eurosat_like_files()
    split = make_split(
        files,
        "/data",
        0,
        train_per_class=300,
        val_per_class=100,
        test_per_class=500,
        minority_classes=4,
        minority_shots=5,
    )
    assert split.minority == ["Forest", "Pasture", "PermanentCrop", "SeaLake"]
    rng = np.random.default_rng(0)
    for name in split.classes:  # consumed class after class: test, val, train from one permutation
        perm = [files[name][i] for i in rng.permutation(len(files[name]))]
        assert split.test[name] == perm[:500] and split.val[name] == perm[500:600]
        assert split.train[name] == perm[600 : 600 + (5 if name in split.minority else 300)]
    paths, labels = split.labels_and_paths("train")
    assert len(paths) == 6 * 300 + 4 * 5 and paths[0].startswith("/data/AnnualCrop/")


def test_split_rest_and_natural_imbalance():
    files = {
        "a": [f"a/{i}" for i in range(40)],
        "b": [f"b/{i}" for i in range(40)],
        "c": [f"c/{i}" for i in range(8)],
    }
    split = make_split(files, "/d", 1, train_frac=0.5)
    assert split.counts("train") == {"a": 20, "b": 20, "c": 4}
    assert split.counts("val") == {"a": 10, "b": 10, "c": 2} and split.counts("test") == {
        "a": 10,
        "b": 10,
        "c": 2,
    }
    assert split.minority == ["c"]  # fewer than the threshold (20)
    split = make_split(files, "/d", 1, train_frac=0.5, minority=("b",))
    assert split.minority == ["b"] and split.counts("train")["b"] == 20
    with pytest.raises(InputError, match="not a class"):
        make_split(files, "/d", 1, minority=("zebra",))
    with pytest.raises(InputError, match="larger than class"):
        make_split(files, "/d", 1, minority=("c",), minority_shots=5)
