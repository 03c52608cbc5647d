"""The calibrated Proto head (``--proto-head calibrated``, the head of ``rfmml-plus``; issue 11).

A Proto head ranks classes by distance to their class means and ignores how rare a class was in
training; a logit-adjusted linear probe corrects for that prior, and beat the paper's RF-MML on frozen
features. The calibrated head makes two changes, both measured on EuroSAT-LT (RESULTS.md):

1. Embeddings are centred on the training embeddings' mean and L2-normalised before the prototypes are
   taken and before scoring (cosine-like: a direction per class, not a magnitude, so the tight
   clusters of well-populated classes no longer swallow the rare ones).
2. The Proto scores get Menon et al.'s prior correction: ``-d(e', p_k) - tau * log pi_k``, ``pi_k``
   the class's share of the training images, ``tau`` chosen on validation by balanced accuracy.

Both travel in the head file (format version 2: ``proto_centre``, ``proto_tau``) and the runtime
applies them (``rfmml.runtime.heads.HeadScorer``). Shapes: embeddings float32 [N, D], labels int64
[N], centre float32 [D].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rfmml.runtime.artifact import Head
from rfmml.runtime.heads import log_prior, proto_logits, proto_space
from rfmml.trainer.heads import fit_head, fit_prototypes

# tau candidates; small values matter: unit-sphere distances lie in [0, 2]
TAU_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
DEFAULT_TAU = 0.0  # without validation images nothing can choose tau: no correction


@dataclass(frozen=True)
class ProtoCalibration:
    """The calibrated head's settings: ``centre`` float32 [D], ``tau`` and
    the validation balanced accuracy of every tau tried (empty without validation images)."""

    centre: np.ndarray
    tau: float
    val_by_tau: dict[float, float]


def embedding_centre(train_emb) -> np.ndarray:
    """The training embeddings' mean, float32 [D] (summed in float64: order-independent enough)."""
    return np.asarray(train_emb, dtype=np.float64).mean(0).astype(np.float32)


def choose_tau(
    logits: np.ndarray, labels: np.ndarray, log_pi: np.ndarray, grid=TAU_GRID
) -> tuple[float, dict[float, float]]:
    """(tau, {tau: balanced accuracy}) on validation: ``logits`` [B, C] uncorrected Proto scores,
    ``labels`` int [B]. Balanced (mean per-class) accuracy, because the test split holds the same
    number of images per class; the smallest tau wins a tie (0 = no correction)."""
    labels = np.asarray(labels)
    present = np.unique(labels)
    scores = {}
    for tau in grid:
        tau = float(tau)
        pred = (logits - tau * np.asarray(log_pi)[None, :]).argmax(1)
        scores[tau] = float(np.mean([(pred[labels == c] == c).mean() for c in present]))
    best = max(scores, key=lambda t: (scores[t], -t))
    return best, scores


def calibrate_proto(
    train_emb, train_labels, val_emb, val_labels, n_classes: int, distance: str, grid=TAU_GRID
) -> ProtoCalibration:
    """Fit the calibrated head's centre on the training embeddings and its tau on validation."""
    centre = embedding_centre(train_emb)
    val_labels = np.asarray(val_labels)
    if len(val_labels) == 0:
        return ProtoCalibration(centre, DEFAULT_TAU, {})
    prototypes = fit_prototypes(train_emb, train_labels, n_classes, centre).numpy()
    logits = proto_logits(proto_space(val_emb, centre), prototypes, distance)
    log_pi = log_prior(np.bincount(np.asarray(train_labels), minlength=n_classes))
    tau, by_tau = choose_tau(logits, val_labels, log_pi, grid)
    return ProtoCalibration(centre, tau, by_tau)


def calibrated_head(train_emb, train_labels, val_emb, val_labels, classes, majority, config) -> Head:
    """The calibrated Proto head (prototypes only) of a run's embeddings: centre from the training
    embeddings, tau on validation; ``config`` gives the distance and input size. Its tau choice is in
    ``metadata["proto"]``."""
    labels = np.asarray(train_labels)
    cal = calibrate_proto(train_emb, labels, val_emb, val_labels, len(classes), config.distance)
    size = (int(config.image_size), int(config.image_size))
    head = fit_head(
        train_emb,
        labels,
        classes,
        majority,
        distance=config.distance,
        input_size=size,
        centre=cal.centre,
        tau=cal.tau,
    )
    return replace(head, metadata={"proto": calibration_record(cal)})


def calibration_record(cal: ProtoCalibration) -> dict:
    """What eval.json and the head's metadata say about the calibration (JSON-able)."""
    return {
        "calibrated": True,
        "tau": cal.tau,
        "val_balanced_accuracy_by_tau": {f"{t:g}": a for t, a in cal.val_by_tau.items()},
    }
