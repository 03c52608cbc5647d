"""Test-time heads built from embeddings of ALL training images: Proto (nearest prototype) and a
one-vs-rest linear SVM; plus embedding and accuracy reports. Independent of the episodic loop."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from rfmml.runtime.heads import l2_normalize
from rfmml.trainer.episode import pairwise_distance


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, device="cpu") -> torch.Tensor:
    """uint8 [N, H, W, 3] (any device) -> float32 [N, D] on the CPU; eval mode, no grad, bf16
    autocast on CUDA. The model's train/eval mode is restored afterwards."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out.append(model(batch).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        dim = getattr(model, "embedding_dim", 0)
        return torch.zeros(0, dim)
    return torch.cat(out)


def fit_prototypes(emb: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean embedding per class: emb [N, D], labels int64 [N] -> [C, D] (a class with no image: 0)."""
    emb = torch.as_tensor(emb, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    sums = torch.zeros(n_classes, emb.shape[1]).index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=n_classes).clamp_min(1).float()
    return sums / counts[:, None]


def proto_scores(emb: torch.Tensor, prototypes: torch.Tensor, distance: str) -> torch.Tensor:
    """-d(emb, prototypes): emb [N, D], prototypes [C, D] -> scores [N, C]."""
    return -pairwise_distance(torch.as_tensor(emb), torch.as_tensor(prototypes), distance)


def _l2(x: np.ndarray) -> np.ndarray:
    """The runtime's L2 normalisation (the deployed head applies exactly this), as float32."""
    return l2_normalize(x).astype(np.float32)


def fit_svm(
    emb, labels, n_classes: int, C: float = 1.0, class_weight: str | None = "balanced", l2_normalize=True
) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest LinearSVC on (optionally L2-normalised) embeddings.

    emb [N, D], labels [N] -> (coef float32 [C, D], intercept float32 [C]); scores are
    ``e @ coef.T + intercept``. ``class_weight`` "balanced" (default) or None/"none".
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    x = np.asarray(torch.as_tensor(emb, dtype=torch.float32).numpy(), dtype=np.float64)
    y = np.asarray(torch.as_tensor(labels).numpy(), dtype=np.int64)
    if l2_normalize:
        x = _l2(x)
    weight = None if class_weight in (None, "none") else class_weight
    svm = LinearSVC(C=C, class_weight=weight, max_iter=5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        svm.fit(x, y)
    coef = np.zeros((n_classes, x.shape[1]), np.float32)
    intercept = np.full(n_classes, -np.inf, np.float32)  # a class absent from training never wins
    present = svm.classes_.astype(np.int64)
    if len(present) == 2:  # sklearn fits a single binary hyperplane: expand to one row per class
        coef[present[1]], intercept[present[1]] = svm.coef_[0], svm.intercept_[0]
        coef[present[0]], intercept[present[0]] = -svm.coef_[0], -svm.intercept_[0]
    else:
        coef[present], intercept[present] = svm.coef_, svm.intercept_
    return coef, intercept


def svm_scores(emb, coef: np.ndarray, intercept: np.ndarray, l2_normalize: bool) -> np.ndarray:
    """emb [N, D] -> float32 scores [N, C] = e @ coef.T + intercept (e L2-normalised first if asked)."""
    x = np.asarray(torch.as_tensor(emb, dtype=torch.float32).numpy(), dtype=np.float32)
    if l2_normalize:
        x = _l2(x)
    return x @ coef.T + intercept


def accuracy_report(pred, labels, classes: list[str], majority: list[str]) -> dict:
    """Accuracies in [0, 1]: {"overall", "majority", "minority", "per_class": {class: acc}}.

    Majority/minority are means over images of those classes (None when a group has no image).
    """
    pred = np.asarray(torch.as_tensor(pred).cpu().numpy()).reshape(-1)
    labels = np.asarray(torch.as_tensor(labels).cpu().numpy()).reshape(-1)
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
