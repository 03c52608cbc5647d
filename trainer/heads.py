"""Test-time heads fitted on the embeddings of ALL training images, as the runtime's ``Head`` itself.

The trainer fits (prototypes with torch, the one-vs-rest linear SVM with scikit-learn) and scores
with the runtime's numpy scorers (``rfmml.runtime.heads``), the code that ships: validation, eval.json
and export's checks measure exactly what inference computes. Embeddings are float32 [N, D] (torch or
numpy, on the CPU), labels int64 [N].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from rfmml.runtime.artifact import Head
from rfmml.runtime.heads import HeadScorer, l2_normalize, proto_space, svm_logits


@dataclass(frozen=True)
class SvmSettings:
    """How the SVM head is fitted: C, class weights ("balanced" or None) and L2-normalised inputs."""

    c: float = 1.0
    class_weight: str | None = "balanced"
    l2_normalize: bool = True

    @classmethod
    def from_config(cls, config, c: float = 1.0) -> SvmSettings:
        """A run's settings (a TrainConfig: ``svm_class_weight`` "none" = no weights) with C = ``c``."""
        weight = None if config.svm_class_weight == "none" else config.svm_class_weight
        return cls(c=c, class_weight=weight, l2_normalize=bool(config.svm_l2_normalize))


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, device="cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] (any device) -> float32 [N, D] on the CPU; eval mode, no grad, in float32
    with autocast disabled (even inside an autocast region): validation and eval.json must score the
    embeddings the exported fp32 model computes, and bf16 moves ties. The model's train/eval mode is
    restored afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=False):
                out.append(model(batch).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        dim = getattr(model, "embedding_dim", 0)
        return torch.zeros(0, dim)
    return torch.cat(out)


def fit_prototypes(emb, labels, n_classes: int, centre: np.ndarray | None = None) -> torch.Tensor:
    """Mean embedding per class: emb [N, D], labels int64 [N] -> float32 [C, D] (a class with no
    image: 0). Summed in float32 by torch's index_add_, the order every released metric was made in.
    With a ``centre`` [D] (the calibrated Proto head): the means of the centred, L2-normalised
    embeddings (``rfmml.runtime.heads.proto_space``, as float32)."""
    if centre is not None:
        emb = proto_space(_numpy(emb), centre).astype(np.float32)
    emb = torch.as_tensor(emb, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    sums = torch.zeros(n_classes, emb.shape[1]).index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=n_classes).clamp_min(1).float()
    return sums / counts[:, None]


def fit_svm(
    emb, labels, n_classes: int, C: float = 1.0, class_weight: str | None = "balanced", l2_normalize=True
) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest LinearSVC on (optionally L2-normalised) embeddings.

    emb [N, D], labels [N] -> (coef float32 [C, D], intercept float32 [C]) for the runtime's
    ``svm_logits``; a class absent from training gets intercept -inf (it never wins).
    ``class_weight`` "balanced" (default) or None/"none".
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x = np.asarray(_numpy(emb), dtype=np.float32).astype(np.float64)
    y = _numpy(labels).astype(np.int64)
    if l2_normalize:
        x = _l2(x)
    weight = None if class_weight in (None, "none") else class_weight
    svm = LinearSVC(C=C, class_weight=weight, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x, y)
    coef = np.zeros((n_classes, x.shape[1]), np.float32)
    intercept = np.full(n_classes, -np.inf, np.float32)
    present = svm.classes_.astype(np.int64)
    if len(present) == 2:  # sklearn fits a single binary hyperplane: expand to one row per class
        coef[present[1]], intercept[present[1]] = svm.coef_[0], svm.intercept_[0]
        coef[present[0]], intercept[present[0]] = -svm.coef_[0], -svm.intercept_[0]
    else:
        coef[present], intercept[present] = svm.coef_, svm.intercept_
    return coef, intercept


def fit_head(
    train_emb,
    train_labels,
    classes: list[str] | tuple[str, ...],
    majority: list[str] | tuple[str, ...],
    *,
    distance: str,
    input_size: tuple[int, int],
    svm: SvmSettings | None = None,
    centre: np.ndarray | None = None,
    tau: float = 0.0,
) -> Head:
    """The runtime's Head from training embeddings [N, D] and labels [N]: prototypes, and the SVM
    when ``svm`` is given; majority mask and training counts per class. ``centre`` [D] and ``tau``:
    the calibrated Proto head (rfmml.trainer.proto_calibration). The model digest and metadata are
    left empty (export fills them)."""
    n_classes = len(classes)
    labels = _numpy(train_labels).astype(np.int64)
    coef = intercept = None
    if svm is not None:
        coef, intercept = fit_svm(train_emb, labels, n_classes, svm.c, svm.class_weight, svm.l2_normalize)
    return Head(
        class_names=tuple(classes),
        input_size=(int(input_size[0]), int(input_size[1])),
        distance=distance,
        prototypes=fit_prototypes(train_emb, labels, n_classes, centre).numpy(),
        majority=np.array([name in majority for name in classes], dtype=bool),
        train_counts=np.bincount(labels, minlength=n_classes).astype(np.int64),
        svm_coef=coef,
        svm_intercept=intercept,
        svm_l2_normalize=True if svm is None else bool(svm.l2_normalize),
        proto_centre=None if centre is None else np.asarray(centre, dtype=np.float32),
        proto_tau=float(tau),
    )


def predict(head: Head, emb, kind: str) -> np.ndarray:
    """Predicted class indices int64 [N] of embeddings [N, D] by the runtime's scorer ``kind``
    ("proto" or "svm"; the first class wins a tie)."""
    return HeadScorer(head, kind).logits(_numpy(emb)).argmax(1)


def choose_svm_c(
    train_emb,
    train_labels,
    val_emb,
    val_labels,
    classes: list[str] | tuple[str, ...],
    majority: list[str] | tuple[str, ...],
    grid,
    settings: SvmSettings,
) -> tuple[float, dict[float, float]]:
    """(best C, {C: validation overall accuracy}) over ``grid``: an SVM per C on the training
    embeddings (``settings`` less its C), scored by the runtime's SVM scorer. The first of the grid
    wins ties; without validation images, C = 1 when in the grid, else the grid's first value."""
    grid = list(grid)
    if len(val_labels) == 0:
        return (1.0 if 1.0 in grid else grid[0]), {}
    scores: dict[float, float] = {}
    for c in grid:
        coef, intercept = fit_svm(
            train_emb, train_labels, len(classes), c, settings.class_weight, settings.l2_normalize
        )
        pred = svm_logits(_numpy(val_emb), coef, intercept, settings.l2_normalize).argmax(1)
        scores[c] = accuracy_report(pred, val_labels, list(classes), list(majority))["overall"]
    best = max(grid, key=lambda c: (scores[c], -grid.index(c)))
    return best, scores


def accuracy_report(pred, labels, classes: list[str], majority: list[str]) -> dict:
    """Accuracies in [0, 1]: {"overall", "majority", "minority", "per_class": {class: acc}}.

    ``pred`` and ``labels``: class indices [N] (numpy or CPU torch). Majority/minority are means over
    images of those classes (None when a group has no image).
    """
    pred = _numpy(pred).reshape(-1)
    labels = _numpy(labels).reshape(-1)
    correct = pred == labels
    is_major = np.isin(labels, [classes.index(c) for c in majority])

    def mean(mask: np.ndarray) -> float | None:
        return float(correct[mask].mean()) if mask.any() else None

    return {
        "overall": mean(np.ones_like(correct)),
        "majority": mean(is_major),
        "minority": mean(~is_major),
        "per_class": {name: mean(labels == i) for i, name in enumerate(classes)},
    }


def _numpy(values) -> np.ndarray:
    """A CPU torch tensor or array-like as a numpy array (no copy when already one)."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _l2(x: np.ndarray) -> np.ndarray:
    """The runtime's L2 normalisation (the deployed head applies exactly this), as float32: the SVM
    is fitted on what inference will feed it."""
    return l2_normalize(x).astype(np.float32)
