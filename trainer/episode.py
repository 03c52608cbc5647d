"""The episode's maths: prototypes, distances, the loss, one training step's forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_distance(x: torch.Tensor, y: torch.Tensor, distance: str) -> torch.Tensor:
    """x float [M, D], y float [K, D] -> [M, K] Euclidean or squared Euclidean distances (float32)."""
    x, y = x.float(), y.float()
    sq = (x * x).sum(1, keepdim=True) - 2.0 * x @ y.T + (y * y).sum(1)[None, :]
    sq = sq.clamp_min(0.0)
    if distance == "sqeuclidean":
        return sq
    if distance == "euclidean":
        return (sq + 1e-12).sqrt()  # eps keeps the gradient finite at 0
    raise ValueError(f"unknown distance {distance!r}")


def episode_prototypes(support_emb: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """support_emb [K * N, D], class-major -> prototypes [K, D] (mean of each class's N shots)."""
    return support_emb.view(k, n, -1).mean(1)


def episode_loss(
    embeddings: torch.Tensor, k: int, n: int, query_labels: torch.Tensor, distance: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypical loss of one episode.

    embeddings: [K * N + M, D], the K * N support embeddings (class-major) then the M queries;
    query_labels: int64 [M] in [0, K). Returns (mean cross-entropy of softmax(-d), accuracy), both
    0-d float tensors on the device (no host sync).
    """
    support, query = embeddings[: k * n], embeddings[k * n :]
    logits = -pairwise_distance(query, episode_prototypes(support, k, n), distance)
    loss = F.cross_entropy(logits, query_labels)
    accuracy = (logits.argmax(1) == query_labels).float().mean()
    return loss, accuracy
