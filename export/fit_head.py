"""The head of an export: the runtime's ``Head``, fitted by the trainer on onnxruntime embeddings.

Prototypes on ALL training embeddings and (optionally) the one-vs-rest linear SVM, its C chosen on
validation by ``rfmml.trainer.heads.choose_svm_c`` (the grid and tie rule of the run's eval.json).
The fitting record goes into the head's metadata; the writer adds the model digest. Embeddings are
float32 numpy [N, D], labels int64 [N].
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rfmml.runtime.artifact import Head
from rfmml.trainer.heads import SvmSettings, choose_svm_c, fit_head
from rfmml.trainer.proto_calibration import calibrated_head

FITTED_ON = "onnxruntime fp32 embeddings (the exported model) of all training images"


def fit_export_head(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    val_emb: np.ndarray,
    val_labels: np.ndarray,
    split,
    config,
    *,
    input_size: tuple[int, int],
    svm: bool = True,
) -> Head:
    """The head for ``split``'s classes (``config``: the run's TrainConfig with any CLI overrides:
        distance, svm_c grid, svm_class_weight, svm_l2_normalize). Metadata: ``heads_fitted_on`` and,
        with the SVM, ``svm`` = {C, class_weight, l2_normalize, val_accuracy_by_c}; with the calibrated Proto
    head (``config.calibrated_proto``), ``proto`` = {calibrated, tau, val_balanced_accuracy_by_tau};
    digest left empty."""
    classes, majority = list(split.classes), list(split.majority)
    fit = {"distance": config.distance, "input_size": input_size}
    metadata: dict = {"heads_fitted_on": FITTED_ON}
    if config.calibrated_proto:  # centre and tau refitted on these embeddings, by the run's rule
        calibrated = calibrated_head(train_emb, train_labels, val_emb, val_labels, classes, majority, config)
        fit.update(centre=calibrated.proto_centre, tau=calibrated.proto_tau)
        metadata["proto"] = calibrated.metadata["proto"]
    if not svm:
        return dataclasses.replace(
            fit_head(train_emb, train_labels, classes, majority, **fit), metadata=metadata
        )
    chosen, by_c = choose_svm_c(
        train_emb,
        train_labels,
        val_emb,
        val_labels,
        classes,
        majority,
        config.svm_c,
        SvmSettings.from_config(config),
    )
    head = fit_head(
        train_emb, train_labels, classes, majority, **fit, svm=SvmSettings.from_config(config, chosen)
    )
    metadata["svm"] = {
        "C": float(chosen),
        "class_weight": config.svm_class_weight,
        "l2_normalize": bool(config.svm_l2_normalize),
        "val_accuracy_by_c": {f"{c:g}": float(acc) for c, acc in by_c.items()},
    }
    return dataclasses.replace(head, metadata=metadata)
