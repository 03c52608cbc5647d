"""Class-imbalance tools of the cross-entropy baselines: ReWeight, ReSample, logit adjustment.

counts: int [C] training images per class; labels: int64 [B]; logits: float [B, C].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inverse_frequency_weights(counts: torch.Tensor) -> torch.Tensor:
    """ReWeight: w_k proportional to 1 / n_k, scaled so that sum_k n_k w_k = sum_k n_k.

    With that scaling an epoch's total loss weight equals the number of images, so the learning
    rate means the same as for plain cross-entropy. Returns float32 [C].
    """
    counts = counts.to(torch.float32)
    weights = 1.0 / counts
    return weights * counts.sum() / (weights * counts).sum()


def balanced_sampling_probabilities(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """ReSample: per-image probability 1 / (C * n_{y_i}), so every class is drawn equally often.

    labels: int64 [N]; returns float64 [N] summing to 1.
    """
    counts = torch.bincount(labels, minlength=n_classes).to(torch.float64)
    present = int((counts > 0).sum())
    return 1.0 / (present * counts[labels])


def log_prior(counts: torch.Tensor) -> torch.Tensor:
    """log pi_k, the log of the training class frequencies; float32 [C]."""
    counts = counts.to(torch.float32)
    return torch.log(counts / counts.sum())


def logit_adjusted_loss(
    logits: torch.Tensor, labels: torch.Tensor, log_pi: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Logit-adjusted cross-entropy (Menon et al., ICLR 2021), mean over the batch.

    loss = -log( exp(z_y + tau log pi_y) / sum_k exp(z_k + tau log pi_k) ). At test time the raw
    logits z are used, which amounts to subtracting tau log pi from the trained scores.
    """
    return F.cross_entropy(logits + tau * log_pi.to(logits.dtype), labels)
