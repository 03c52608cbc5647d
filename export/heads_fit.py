"""The heads of an export: prototypes and a one-vs-rest linear SVM with C chosen on validation.

All fitting, scoring and the choice of C are the trainer's (``rfmml.trainer.heads`` and
``rfmml.trainer.evaluate.choose_svm_c``: one implementation, shared with the run's eval.json); this
module assembles the artifact's ``Head`` and keeps score functions for the parity reports.
Embeddings here are float32 numpy [N, D], labels int64 [N].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rfmml.runtime.artifact import Head


@dataclass(frozen=True)
class FittedHeads:
    """Prototypes [C, D], optional SVM coef [C, D] / intercept [C], and how they were chosen."""

    class_names: tuple[str, ...]
    classes_majority: tuple[str, ...]
    input_size: tuple[int, int]
    distance: str
    prototypes: np.ndarray
    train_counts: np.ndarray
    svm_coef: np.ndarray | None
    svm_intercept: np.ndarray | None
    svm_l2_normalize: bool
    metadata: dict
    val_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def majority(self) -> np.ndarray:
        return np.array([name in self.classes_majority for name in self.class_names], dtype=bool)

    @property
    def scorers(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Head name -> (embeddings [N, D] -> scores [N, C]), with the trainer's score functions."""
        from rfmml.trainer import heads

        out = {"proto": lambda emb: np.asarray(heads.proto_scores(emb, self.prototypes, self.distance))}
        if self.svm_coef is not None:
            coef, intercept, l2 = self.svm_coef, self.svm_intercept, self.svm_l2_normalize
            out["svm"] = lambda emb: np.asarray(heads.svm_scores(emb, coef, intercept, l2))
        return out

    def accuracy(self, embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Overall accuracy of every head on labelled embeddings (fractions in [0, 1])."""
        from rfmml.trainer import heads

        if len(labels) == 0:
            return {}
        return {
            name: float(
                heads.accuracy_report(
                    np.argmax(scorer(embeddings), axis=1),
                    labels,
                    list(self.class_names),
                    list(self.classes_majority),
                )["overall"]
            )
            for name, scorer in self.scorers.items()
        }

    def head_with(self, metadata: dict) -> Head:
        """The artifact's Head (digest left empty: the writer fills it from the model bytes)."""
        return Head(
            class_names=self.class_names,
            input_size=self.input_size,
            distance=self.distance,
            prototypes=self.prototypes.astype(np.float32),
            majority=self.majority,
            train_counts=self.train_counts.astype(np.int64),
            svm_coef=None if self.svm_coef is None else self.svm_coef.astype(np.float32),
            svm_intercept=None if self.svm_intercept is None else self.svm_intercept.astype(np.float32),
            svm_l2_normalize=self.svm_l2_normalize,
            metadata=metadata,
        )

    def log_lines(self) -> list[str]:
        lines = [
            f"prototypes: {len(self.class_names)} classes x {self.prototypes.shape[1]} dims ({self.distance})"
        ]
        svm = self.metadata.get("svm")
        if svm:
            grid = ", ".join(f"C={c}: {100 * a:.2f}%" for c, a in svm["val_accuracy_by_c"].items())
            lines.append(
                f"svm: one-vs-rest LinearSVC, class_weight={svm['class_weight']}, l2_normalize="
                f"{svm['l2_normalize']}; C={svm['C']:g} chosen on validation "
                f"({grid or 'no validation images'})"
            )
        if self.val_accuracy:
            lines.append(
                "validation accuracy: "
                + ", ".join(f"{k} {100 * v:.2f}%" for k, v in self.val_accuracy.items())
            )
        return lines


def fit_heads(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    val_emb: np.ndarray,
    val_labels: np.ndarray,
    split,
    config,
    *,
    input_size: tuple[int, int],
    svm: bool = True,
) -> FittedHeads:
    """Fit the prototypes on ALL training embeddings and (optionally) the SVM.

    ``config``: the run's TrainConfig (with any CLI overrides applied): distance, svm_c (the grid),
    svm_class_weight, svm_l2_normalize. C is chosen on validation by the trainer's own
    ``rfmml.trainer.evaluate.choose_svm_c`` (same grid, same tie rule as the run's eval.json).
    """
    from rfmml.trainer import heads
    from rfmml.trainer.evaluate import choose_svm_c

    class_names = tuple(split.classes)
    n_classes = len(class_names)
    train_labels = np.asarray(train_labels, dtype=np.int64)
    prototypes = np.asarray(heads.fit_prototypes(train_emb, train_labels, n_classes), dtype=np.float32)
    fitted = FittedHeads(
        class_names=class_names,
        classes_majority=tuple(split.majority),
        input_size=input_size,
        distance=config.distance,
        prototypes=prototypes,
        train_counts=np.bincount(train_labels, minlength=n_classes).astype(np.int64),
        svm_coef=None,
        svm_intercept=None,
        svm_l2_normalize=bool(config.svm_l2_normalize),
        metadata={
            "heads_fitted_on": "onnxruntime fp32 embeddings (the exported model) of all training images"
        },
    )
    if svm:

        def report(pred, labels) -> dict:
            return heads.accuracy_report(pred, labels, list(class_names), list(split.majority))

        chosen, by_c = choose_svm_c(train_emb, train_labels, val_emb, val_labels, n_classes, config, report)
        weight = None if config.svm_class_weight == "none" else config.svm_class_weight
        coef, intercept = heads.fit_svm(
            train_emb, train_labels, n_classes, chosen, weight, bool(config.svm_l2_normalize)
        )
        svm_meta = {
            "C": float(chosen),
            "class_weight": config.svm_class_weight,
            "l2_normalize": bool(config.svm_l2_normalize),
            "val_accuracy_by_c": {f"{c:g}": float(acc) for c, acc in by_c.items()},
        }
        fitted = dataclasses.replace(
            fitted,
            svm_coef=np.asarray(coef, np.float32),
            svm_intercept=np.asarray(intercept, np.float32),
            metadata={**fitted.metadata, "svm": svm_meta},
        )
    return dataclasses.replace(fitted, val_accuracy=fitted.accuracy(val_emb, val_labels))
