"""Deprecated name, kept only until ``rfmml.export.pipeline`` calls ``rfmml.export.fit_head``.

``fit_heads(...)`` = ``fit_export_head(...)`` (the runtime's ``Head``) in a thin wrapper that keeps
the pipeline's old calls working; every score comes from ``rfmml.runtime.heads.HeadScorer``, the
scorer that ships (the old FittedHeads mirror of the Head and its trainer-side scorers are gone).
Delete this module once nothing imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rfmml.export.fit_head import fit_export_head
from rfmml.runtime.artifact import Head
from rfmml.runtime.heads import HeadScorer


@dataclass(frozen=True)
class FittedHeads:
    """The fitted runtime Head and its validation accuracy per kind (compatibility wrapper)."""

    head: Head
    val_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def metadata(self) -> dict:
        return self.head.metadata

    @property
    def scorers(self) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Head kind -> (embeddings [N, D] -> logits [N, C]), the runtime's scorer."""
        return {kind: HeadScorer(self.head, kind).logits for kind in self.head.kinds}

    def accuracy(self, embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Overall accuracy of every kind on labelled embeddings (fractions in [0, 1]); {} for none."""
        if len(labels) == 0:
            return {}
        return {
            k: float(np.mean(s(embeddings).argmax(1) == np.asarray(labels))) for k, s in self.scorers.items()
        }

    def head_with(self, metadata: dict) -> Head:
        return dataclasses.replace(self.head, metadata=metadata)

    def log_lines(self) -> list[str]:
        head = self.head
        lines = [f"prototypes: {len(head.class_names)} classes x {head.embedding_dim} dims ({head.distance})"]
        svm = head.metadata.get("svm")
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


def fit_heads(train_emb, train_labels, val_emb, val_labels, split, config, **kwargs) -> FittedHeads:
    """``fit_export_head`` (same arguments) in the compatibility wrapper, with validation accuracy."""
    head = fit_export_head(train_emb, train_labels, val_emb, val_labels, split, config, **kwargs)
    return FittedHeads(head, FittedHeads(head).accuracy(val_emb, val_labels))
