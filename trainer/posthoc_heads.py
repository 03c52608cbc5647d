"""Test-time head candidates for RF-MML+ (issue 11), measured post hoc on finished runs by
benchmarks/prior_correction.py (RESULTS.md, "RF-MML+ on pretrained features").

The winner, centring + L2-normalising + a prior correction with tau on validation, ships as the
calibrated Proto head (rfmml.trainer.proto_calibration; the runtime applies it). The others stay here
because the benchmark measures them on every grid run, and RESULTS.md reports them as tried:

- ``prior_corrected_logits``: the correction on the plain (uncentred) Proto scores;
- ``ensemble_logits``: Proto + SVM, their row-wise z-scores summed;
- ``calibrate_prototypes``: distribution calibration (Yang et al., ICLR 2021) of the minority classes.

A prior correction inside the episodic loss (logit adjustment of the query logits, tau 1) was tried
as rfmml-plus's loss and lowered the test numbers (EuroSAT-LT seed 0, s = 5: 85.9 / 77.5 against
86.8 / 80.7 with the paper's loss, same budget and head): rfmml-plus keeps the paper's loss.

Shapes: embeddings float [B, D], prototypes [C, D], counts int [C].
"""

from __future__ import annotations

import numpy as np

from rfmml.runtime.heads import proto_logits


def prior_corrected_logits(
    embeddings: np.ndarray, prototypes: np.ndarray, distance: str, log_pi: np.ndarray, tau: float
) -> np.ndarray:
    """Post-hoc corrected Proto scores float64 [B, C]: ``-d(e, p_k) - tau * log pi_k``."""
    return proto_logits(embeddings, prototypes, distance) - tau * np.asarray(log_pi, np.float64)[None, :]


def zscore(scores: np.ndarray) -> np.ndarray:
    """Row-wise standardised scores [B, C] (mean 0, population std 1), so heads of different scales
    (distances, SVM margins) can be summed."""
    s = np.asarray(scores, np.float64)
    return (s - s.mean(1, keepdims=True)) / np.maximum(s.std(1, keepdims=True), 1e-12)


def ensemble_logits(proto_scores: np.ndarray, svm_scores: np.ndarray) -> np.ndarray:
    """The Proto + SVM ensemble's scores [B, C]: the sum of the two heads' row-wise z-scores."""
    return zscore(proto_scores) + zscore(svm_scores)


def calibrate_prototypes(
    prototypes: np.ndarray,
    covariances: np.ndarray,
    minority: list[int],
    majority: list[int],
    k: int = 2,
    alpha: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Distribution calibration (Yang et al., ICLR 2021) of the minority classes' statistics with
    those of their ``k`` nearest majority classes (Euclidean distance between prototypes).

    prototypes [C, D], covariances [C, D, D] -> (means [C, D], covariances [C, D, D]): for a
    minority class m with nearest majority set B, ``mean_m = (p_m + sum_B p_b) / (k + 1)`` and
    ``cov_m = sum_B cov_b / k + alpha * I``; majority classes keep theirs. (The paper then samples
    features from N(mean_m, cov_m) to train a classifier; a Proto head uses the means.)"""
    means = np.array(prototypes, dtype=np.float64, copy=True)
    covs = np.array(covariances, dtype=np.float64, copy=True)
    base = np.asarray(majority)
    k = min(k, len(base))
    for m in minority:
        d = np.linalg.norm(prototypes[base] - prototypes[m][None, :], axis=1)
        nearest = base[np.argsort(d, kind="stable")[:k]]
        means[m] = (prototypes[m] + prototypes[nearest].sum(0)) / (k + 1)
        covs[m] = covariances[nearest].mean(0) + alpha * np.eye(prototypes.shape[1])
    return means, covs
