"""Training on cached backbone features (``--tune head`` and ``--method frozen``).

The backbone is frozen, so the features of every image are computed once (``feature_cache``) and the
method trains on them: :func:`feature_parts` turns the decoded image parts into feature parts, and
:class:`CachedFeatureModel` is the embedding net seen from those features (its forward is the head
alone). Its ``state_dict`` is the whole EmbeddingNet's, so checkpoints, export and ``load_run`` see
the same network as in every other regime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rfmml.trainer.feature_cache import DIHEDRAL_VIEWS, cached_features
from rfmml.trainer.models import EmbeddingNet
from rfmml.trainer.train_progress import TrainProgress
from rfmml.trainer.tuning import FeatureHead

Parts = dict[str, tuple[torch.Tensor, torch.Tensor]]


class CachedFeatureModel(nn.Module):
    """``net`` applied to its backbone's cached features: float [B, F] -> embeddings float [B, D]."""

    def __init__(self, net: EmbeddingNet) -> None:
        super().__init__()
        self.net = net
        self.embedding_dim = net.embedding_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.head(features).float()

    def train(self, mode: bool = True) -> CachedFeatureModel:
        """Only the head changes mode: the backbone is frozen (eval) and walking its hundreds of
        modules every step would cost more than the step itself."""
        self.training = mode
        self.net.training = mode
        self.net.head.train(mode)
        return self

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


def feature_parts(
    net: EmbeddingNet,
    parts: Parts,
    views: int,
    cache_dir: Path | None,
    batch_size: int,
    device: torch.device,
    say: Callable[[str], None],
    progress: bool,
) -> tuple[Parts, torch.Tensor]:
    """({part: (features float32 [N, F] of the image as it is, labels)}, training features of every
    view float32 [N_train, views, F]), from the cache or computed once (with a progress bar).

    The training part gets ``views`` views (1, or the 8 dihedral transforms for ``--augment``); the
    validation and test parts one. A FeatureHead on ``net`` is standardised on the training features."""
    net.to(device)
    out: Parts = {}
    train_views = torch.zeros(0)
    for part, (images, labels) in parts.items():
        n_views = views if part == "train" else 1
        bar = TrainProgress(enabled=progress)
        bar.start_phase(f"features {part}", images.shape[0] * n_views, 0, "images")
        features, hit = cached_features(net, images, n_views, cache_dir, batch_size, device, bar.update)
        bar.close()
        if not hit:
            say(
                f"computed {part} features: {images.shape[0]} images x {n_views} view(s), "
                f"{bar.rate:.0f} img/s"
            )
        out[part] = (features[:, 0].contiguous(), labels)
        if part == "train":
            train_views = features
    if isinstance(net.head, FeatureHead):
        net.head.standardise_with(out["train"][0])
    return out, train_views


def feature_views(config_augment: bool) -> int:
    """How many views of each training image are cached: the 8 dihedral transforms that ``--augment``
    draws from, else the image as it is."""
    return DIHEDRAL_VIEWS if config_augment else 1
