"""RF-MML+ (issue 11): RF-MML (RET then ACF) with the class prior corrected, Menon et al.'s logit
adjustment carried over to prototypes.

A logit-adjusted linear probe beats the paper's RF-MML on frozen features because it corrects for the
class prior; a Proto head does not. Two places to correct it:

- in the episodic loss (``--method rfmml-plus``, strength ``--la-tau``): the query's logits
  ``-d(q, p_k)`` get ``+ tau * log pi_k`` before the softmax cross-entropy, ``pi_k`` the class's share
  of ALL training images (not of the episode: the prior the test set is scored against). Rare classes
  are pushed to win by a margin while training; the test-time Proto head is unchanged (-d), so the
  runtime needs nothing new. RET episodes hold majority classes of equal counts only, where the
  correction is a constant shift and changes nothing: it acts in ACF.
- post hoc, at the Proto head: ``-d(e, p_k) - tau * log pi_k`` with tau chosen on validation
  (:func:`prior_corrected_logits`, :func:`choose_tau`); measured by benchmarks/prior_correction.py on
  finished runs. Shipping it needs a per-class bias in the head file (see RESULTS.md, issue 11).

Shapes: embeddings float [B, D], prototypes [C, D], counts int [C].
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from rfmml.runtime.heads import log_prior, proto_logits
from rfmml.trainer.engine import TrainSetup
from rfmml.trainer.episode import episode_prototypes, pairwise_distance
from rfmml.trainer.episodic import EpisodicMethod
from rfmml.trainer.sampler import Episode

PLUS_METHOD = "rfmml-plus"


def prior_corrected_episode_loss(
    embeddings: torch.Tensor,
    k: int,
    n: int,
    query_labels: torch.Tensor,
    distance: str,
    episode_log_prior: torch.Tensor,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit-adjusted prototypical loss of one episode.

    embeddings [K * N + M, D] (support class-major, then queries), query_labels int64 [M] in [0, K),
    episode_log_prior float [K] (log prior of the episode's classes). Returns (mean cross-entropy of
    softmax(-d + tau * log pi), accuracy of the uncorrected argmax(-d), the test-time rule)."""
    support, query = embeddings[: k * n], embeddings[k * n :]
    logits = -pairwise_distance(query, episode_prototypes(support, k, n), distance)
    loss = F.cross_entropy(logits + tau * episode_log_prior[None, :].to(logits.dtype), query_labels)
    accuracy = (logits.argmax(1) == query_labels).float().mean()
    return loss, accuracy


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


class RfmmlPlusMethod(EpisodicMethod):
    """RF-MML's phases (RET then ACF) with :func:`prior_corrected_episode_loss` at ``--la-tau``."""

    def __init__(self, setup: TrainSetup) -> None:
        super().__init__(replace(setup, config=setup.config.replace(method="rfmml")))  # rfmml's plan
        self.setup = setup
        counts = torch.bincount(setup.data.train_labels.cpu(), minlength=len(setup.split.classes))
        self.log_prior = torch.as_tensor(log_prior(counts.numpy()), dtype=torch.float32).to(setup.device)
        self.tau = float(setup.config.la_tau)

    def describe(self) -> str:
        return super().describe() + f", prior-corrected episodic loss (tau {self.tau:g})"

    def loss(self, emb: torch.Tensor, ep: Episode) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit-adjusted episodic loss: the episode's classes' log-priors added at ``tau``."""
        return prior_corrected_episode_loss(
            emb, ep.k, ep.n, ep.query_labels, self.setup.config.distance, self.log_prior[ep.classes], self.tau
        )
