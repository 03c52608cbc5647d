"""Classifier heads applied to embeddings, exactly as the artifact contract defines them (numpy only).

The one implementation of the distance, the Proto scorer and the SVM scorer: inference, the trainer's
validation and test evaluation, and export's agreement checks all score with these functions.

- proto: ``score_k = -d(e, prototype_k)`` with d Euclidean or squared Euclidean; the reported score is
  the softmax probability of the class (softmax over the negative distances). A calibrated Proto head
  (format version 2, ``rfmml-plus``) first maps ``e`` to ``(e - centre) / ||e - centre||`` (the
  prototypes live in that space) and adds the prior correction ``-tau * log pi_k`` (``pi_k``: the
  class's share of the training images, from ``train_counts``): ``score_k = -d(e', p_k) - tau log pi_k``.
- svm: ``score_k = e @ coef.T + intercept`` (``e`` L2-normalised first when the head says so); the
  reported score is that decision value (a margin, not a probability).
"""

from __future__ import annotations

import numpy as np

from rfmml.runtime.artifact import HEAD_KINDS, ArtifactError, Head

__all__ = [
    "HEAD_KINDS",
    "HeadScorer",
    "l2_normalize",
    "log_prior",
    "pairwise_distance",
    "prior_bias",
    "proto_space",
    "proto_logits",
    "softmax",
    "svm_logits",
]


def pairwise_distance(embeddings: np.ndarray, prototypes: np.ndarray, distance: str) -> np.ndarray:
    """Distances [B, C] between embeddings [B, D] and prototypes [C, D], computed in float64."""
    e = np.asarray(embeddings, dtype=np.float64)
    p = np.asarray(prototypes, dtype=np.float64)
    squared = (e * e).sum(1)[:, None] - 2.0 * (e @ p.T) + (p * p).sum(1)[None, :]
    np.maximum(squared, 0.0, out=squared)
    if distance == "sqeuclidean":
        return squared
    if distance == "euclidean":
        return np.sqrt(squared)
    raise ValueError(f"unknown distance {distance!r}")


def proto_logits(embeddings: np.ndarray, prototypes: np.ndarray, distance: str) -> np.ndarray:
    """Proto scores before the softmax: ``-d(e, prototype_k)``, float64 [B, C] from embeddings [B, D]
    and prototypes [C, D] (numpy arrays, or anything ``numpy.asarray`` takes)."""
    return -pairwise_distance(embeddings, prototypes, distance)


def svm_logits(
    embeddings: np.ndarray, coef: np.ndarray, intercept: np.ndarray, l2_normalize_first: bool
) -> np.ndarray:
    """SVM decision values ``e @ coef.T + intercept``, float64 [B, C] from embeddings [B, D], coef
    [C, D] and intercept [C]; ``e`` L2-normalised first when ``l2_normalize_first``."""
    e = l2_normalize(embeddings) if l2_normalize_first else np.asarray(embeddings, dtype=np.float64)
    return e @ np.asarray(coef, dtype=np.float64).T + np.asarray(intercept, dtype=np.float64)


def proto_space(embeddings: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    """Embeddings [B, D] in the space the Proto head's prototypes live in, float64: as they are, or,
    with a ``centre`` [D] (a calibrated head), centred on it and L2-normalised (cosine-like)."""
    if centre is None:
        return np.asarray(embeddings, dtype=np.float64)
    return l2_normalize(np.asarray(embeddings, np.float64) - np.asarray(centre, np.float64)[None, :])


def log_prior(counts) -> np.ndarray:
    """log(count_k / sum counts), float64 [C]; a class without images gets log(1 / (2 * total))
    (below every present class, finite)."""
    c = np.asarray(counts, dtype=np.float64)
    return np.log(np.where(c > 0, c, 0.5) / max(c.sum(), 1.0))


def prior_bias(counts, tau: float) -> np.ndarray:
    """The Proto head's prior correction ``-tau * log pi_k``, float64 [C] (zeros when tau is 0):
    rare classes get a head start proportional to how rare they were in training."""
    if not tau:
        return np.zeros(len(counts), dtype=np.float64)
    return -float(tau) * log_prior(counts)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [B, C] (float64, numerically stable)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def l2_normalize(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of [B, D] scaled to unit L2 norm (rows of zeros stay zero)."""
    e = np.asarray(embeddings, dtype=np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), eps)


class HeadScorer:
    """Turns embeddings [B, D] into class scores [B, C] with the chosen head ("proto" or "svm")."""

    def __init__(self, head: Head, kind: str = "proto") -> None:
        if kind not in HEAD_KINDS:
            raise ArtifactError(f"unknown head {kind!r}: choose one of {HEAD_KINDS}")
        if kind == "svm" and not head.has_svm:
            raise ArtifactError("this head file has no SVM head (export fitted prototypes only): use proto")
        self.head = head
        self.kind = kind

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """Raw scores [B, C] (float64): -distance for proto, decision values for svm.

        ArtifactError when the embeddings are not [B, D] with the head's D: the model and the head
        do not belong together (a head edited after export still carries the model's digest)."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.head.embedding_dim:
            raise ArtifactError(
                f"the model gives embeddings of shape {tuple(embeddings.shape)} but the head expects "
                f"[batch, {self.head.embedding_dim}]: the model and head do not belong together"
            )
        head = self.head
        if self.kind == "proto":
            logits = proto_logits(proto_space(embeddings, head.proto_centre), head.prototypes, head.distance)
            if head.proto_tau:
                logits += prior_bias(head.train_counts, head.proto_tau)[None, :]
            return logits
        assert head.svm_coef is not None and head.svm_intercept is not None
        return svm_logits(embeddings, head.svm_coef, head.svm_intercept, head.svm_l2_normalize)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Reported scores [B, C] (float64): softmax probabilities for proto, decision values for svm."""
        logits = self.logits(embeddings)
        return softmax(logits) if self.kind == "proto" else logits

    def topk(self, embeddings: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top-k classes and scores, best first: labels int64 [B, k], scores float32 [B, k].

        Ties go to the lower class index (a stable sort), so results are deterministic.
        """
        scores = self.scores(embeddings)
        k = max(1, min(int(k), scores.shape[1]))
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return order.astype(np.int64), np.take_along_axis(scores, order, axis=1).astype(np.float32)
