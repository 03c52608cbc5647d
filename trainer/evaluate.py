"""Final evaluation: Proto and SVM heads from ALL training embeddings, scored on the test split by the
runtime's scorers (the code inference runs).

With ``--proto-head calibrated`` the Proto head is the calibrated one (centre, tau on validation:
rfmml.trainer.proto_calibration), reported under "proto_params". The SVM's C is chosen from
``config.svm_c`` by validation overall accuracy (the first of the grid wins ties; without validation
images, C = 1 when in the grid, else the grid's first value).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from rfmml.trainer.config import TrainConfig
from rfmml.trainer.heads import SvmSettings, accuracy_report, choose_svm_c, embed, fit_head, predict
from rfmml.trainer.proto_calibration import calibrated_head


def evaluate_heads(
    model: torch.nn.Module,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    classes: list[str],
    majority: list[str],
    config: TrainConfig,
    device: torch.device,
    linear: torch.nn.Module | None = None,
) -> dict:
    """``parts``: {"train"|"val"|"test": (images uint8 [N,S,S,3], labels int64 [N])} -> eval.json dict
    (on cached features, features float32 [N, F] that ``model`` maps to embeddings).

    ``linear`` (cross-entropy methods): the trained classifier layer, reported as the "linear" head.
    Every head also gets its test confusion matrix (rows: true class, columns: predicted) under
    "confusion".
    """
    n_classes = len(classes)
    emb = {name: embed(model, images, config.batch_size, device) for name, (images, _) in parts.items()}
    labels = {name: lab.cpu() for name, (_, lab) in parts.items()}
    input_size = (int(config.image_size), int(config.image_size))  # parts may hold cached features
    fit = {"classes": classes, "majority": majority, "distance": config.distance, "input_size": input_size}

    best_c, by_c = choose_svm_c(
        emb["train"],
        labels["train"],
        emb["val"],
        labels["val"],
        classes,
        majority,
        config.svm_c,
        SvmSettings.from_config(config),
    )
    head = fit_head(emb["train"], labels["train"], **fit, svm=SvmSettings.from_config(config, best_c))
    proto_record = None
    if config.calibrated_proto:  # the calibrated Proto head replaces the plain one
        calibrated = calibrated_head(
            emb["train"], labels["train"], emb["val"], labels["val"], classes, majority, config
        )
        head = replace(
            head,
            prototypes=calibrated.prototypes,
            proto_centre=calibrated.proto_centre,
            proto_tau=calibrated.proto_tau,
        )
        proto_record = calibrated.metadata["proto"]

    test_emb, test_labels = emb["test"], labels["test"].numpy()
    predictions: dict[str, np.ndarray] = {}
    if linear is not None:
        with torch.no_grad():
            predictions["linear"] = linear.cpu()(test_emb).argmax(1).numpy()
    predictions["proto"] = predict(head, test_emb, "proto")
    predictions["svm"] = predict(head, test_emb, "svm")

    result: dict = {"method": config.method}
    for name, pred in predictions.items():
        result[name] = accuracy_report(pred, test_labels, classes, majority)
    result["confusion"] = {
        name: confusion_matrix(pred, test_labels, n_classes) for name, pred in predictions.items()
    }
    counts = np.bincount(test_labels, minlength=n_classes)
    result["n_test"] = {name: int(counts[i]) for i, name in enumerate(classes)}
    result["svm_params"] = {
        "C": best_c,
        "class_weight": config.svm_class_weight,
        "l2_normalize": config.svm_l2_normalize,
        "val_overall_by_C": {str(c): a for c, a in by_c.items()},
    }
    if proto_record is not None:
        result["proto_params"] = proto_record
    return result


def confusion_matrix(pred, labels, n_classes: int) -> list[list[int]]:
    """[C][C] counts (scikit-learn's): row = true class, column = predicted class."""
    from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

    if len(labels) == 0:  # scikit-learn refuses empty inputs; an empty test split counts nothing
        return [[0] * n_classes for _ in range(n_classes)]
    matrix = sklearn_confusion_matrix(np.asarray(labels), np.asarray(pred), labels=np.arange(n_classes))
    return matrix.tolist()


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
