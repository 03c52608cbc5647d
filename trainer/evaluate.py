"""Final evaluation: Proto and SVM heads from ALL training embeddings, scored on the test split.

The SVM's C is chosen from ``config.svm_c`` by validation overall accuracy (the first of the grid
wins ties; without validation images, C = 1 when in the grid, else the grid's first value).
"""

from __future__ import annotations

import numpy as np
import torch

from rfmml.trainer.config import TrainConfig
from rfmml.trainer.heads import accuracy_report, embed, fit_prototypes, fit_svm, proto_scores, svm_scores


def choose_svm_c(train_emb, train_labels, val_emb, val_labels, n_classes, config: TrainConfig, report):
    """(best C, {C: validation overall accuracy}) over the grid ``config.svm_c``."""
    weight = None if config.svm_class_weight == "none" else config.svm_class_weight
    if val_emb.shape[0] == 0:
        return (1.0 if 1.0 in config.svm_c else config.svm_c[0]), {}
    scores: dict[float, float] = {}
    for c in config.svm_c:
        coef, intercept = fit_svm(train_emb, train_labels, n_classes, c, weight, config.svm_l2_normalize)
        pred = svm_scores(val_emb, coef, intercept, config.svm_l2_normalize).argmax(1)
        scores[c] = report(pred, val_labels)["overall"]
    best = max(config.svm_c, key=lambda c: (scores[c], -config.svm_c.index(c)))
    return best, scores


def evaluate_heads(
    model: torch.nn.Module,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    classes: list[str],
    majority: list[str],
    config: TrainConfig,
    device: torch.device,
    linear: torch.nn.Module | None = None,
) -> dict:
    """``parts``: {"train"|"val"|"test": (images uint8 [N,S,S,3], labels int64 [N])} -> eval.json dict.

    ``linear`` (cross-entropy methods): the trained classifier layer, reported as the "linear" head.
    Every head also gets its test confusion matrix (rows: true class, columns: predicted) under
    "confusion".
    """
    n_classes = len(classes)
    emb = {name: embed(model, images, config.batch_size, device) for name, (images, _) in parts.items()}
    labels = {name: lab.cpu() for name, (_, lab) in parts.items()}

    def report(pred, lab):
        return accuracy_report(pred, lab, classes, majority)

    result: dict = {"method": config.method}
    test_emb, test_labels = emb["test"], labels["test"]
    predictions: dict[str, torch.Tensor] = {}
    if linear is not None:
        with torch.no_grad():
            predictions["linear"] = linear.cpu()(test_emb).argmax(1)
    prototypes = fit_prototypes(emb["train"], labels["train"], n_classes)
    predictions["proto"] = proto_scores(test_emb, prototypes, config.distance).argmax(1)
    best_c, by_c = choose_svm_c(
        emb["train"], labels["train"], emb["val"], labels["val"], n_classes, config, report
    )
    weight = None if config.svm_class_weight == "none" else config.svm_class_weight
    coef, intercept = fit_svm(
        emb["train"], labels["train"], n_classes, best_c, weight, config.svm_l2_normalize
    )
    predictions["svm"] = torch.as_tensor(
        svm_scores(test_emb, coef, intercept, config.svm_l2_normalize)
    ).argmax(1)
    for head, pred in predictions.items():
        result[head] = report(pred, test_labels)
    result["confusion"] = {
        head: confusion_matrix(pred, test_labels, n_classes) for head, pred in predictions.items()
    }
    counts = np.bincount(test_labels.numpy(), minlength=n_classes)
    result["n_test"] = {name: int(counts[i]) for i, name in enumerate(classes)}
    result["svm_params"] = {
        "C": best_c,
        "class_weight": config.svm_class_weight,
        "l2_normalize": config.svm_l2_normalize,
        "val_overall_by_C": {str(c): a for c, a in by_c.items()},
    }
    return result


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> list[list[int]]:
    """[C][C] counts: row = true class, column = predicted class."""
    flat = torch.as_tensor(labels).long() * n_classes + torch.as_tensor(pred).long()
    return torch.bincount(flat, minlength=n_classes * n_classes).view(n_classes, n_classes).tolist()


def summary_table(result: dict, minority: list[str]) -> str:
    """A plain-text table: head | overall | majority | minority (percent)."""

    def pct(value) -> str:
        return "   -  " if value is None else f"{100 * value:5.1f}%"

    lines = [
        f"test accuracy ({sum(result['n_test'].values())} images; minority: {', '.join(minority) or '-'})",
        "head     overall  majority  minority",
    ]
    for head in ("proto", "svm", "linear"):
        if head in result:
            r = result[head]
            lines.append(f"{head:<8} {pct(r['overall'])}  {pct(r['majority'])}    {pct(r['minority'])}")
    return "\n".join(lines)
