"""Tuning regimes (``--tune``): which part of the embedding network trains.

- ``all``: the whole network trains (the paper).
- ``last``: the backbone's last stage (and everything after it: e.g. efficientnet's conv_head) and the
  head train; the rest is frozen.
- ``head``: the backbone is frozen; a small trainable :class:`FeatureHead` maps its pooled features
  to the embedding. The features are computed once per image and cached (``feature_cache``), so the
  training step never runs the backbone.

Frozen parameters get ``requires_grad=False`` and their modules stay in eval mode whatever
``model.train()`` says (:meth:`rfmml.trainer.models.EmbeddingNet.train`), so BatchNorm statistics are
never updated: a frozen parameter or buffer is bit-identical after training.
"""

from __future__ import annotations

import torch
from torch import nn

from rfmml.runtime.errors import InputError
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.config_defaults import HEAD_EMBED_DIM
from rfmml.trainer.config_rules import CE_METHODS, FROZEN_METHOD, TUNES

__all__ = [
    "HEAD_EMBED_DIM",
    "TUNES",
    "FeatureHead",
    "configure_net",
    "frozen_parts",
    "head_width",
    "last_stage_prefix",
]


class FeatureHead(nn.Module):
    """Pooled backbone features float [B, F] -> embeddings float [B, D].

    Standardises each feature with the training set's mean and std (fixed buffers, set once from the
    cached training features: Adam then sees well-scaled inputs), then a linear projection to
    ``out_dim`` (None: no projection; the standardised features are the embedding, for a linear
    probe). Chosen linear over an MLP: see BENCHMARKS.md ("Tuning regimes").
    """

    def __init__(self, in_dim: int, out_dim: int | None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("inv_std", torch.ones(in_dim))
        self.projection = nn.Linear(in_dim, out_dim) if out_dim is not None else None
        self.out_dim = in_dim if out_dim is None else out_dim

    @torch.no_grad()
    def standardise_with(self, features: torch.Tensor) -> None:
        """Set mean/std from training features float [N, F] (a constant feature: std 1)."""
        features = features.float()
        std = features.std(0, unbiased=False) if features.shape[0] > 1 else torch.ones(features.shape[1])
        self.mean.copy_(features.mean(0))
        self.inv_std.copy_(1.0 / torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.to(self.mean.dtype) - self.mean) * self.inv_std
        return z if self.projection is None else self.projection(z)


def head_width(method: str, tune: str, embed_dim: int | None) -> int | None | str:
    """What head the net of ``method`` gets: "none" (identity: the backbone's features are the
    embedding), or the FeatureHead's projection width (None: standardise only, the input of a
    cross-entropy linear probe)."""
    if method == FROZEN_METHOD:
        return "none"
    if tune == "head":
        if method in CE_METHODS:
            return embed_dim  # None: the linear probe reads the standardised features
        return embed_dim or HEAD_EMBED_DIM
    return "none" if embed_dim is None else embed_dim


def configure_net(net: nn.Module, config: TrainConfig) -> None:
    """Give the EmbeddingNet ``net`` the head and the frozen parts of ``config``'s regime (before the
    weights of a checkpoint are loaded into it: the head is part of its state dict)."""
    tune = config.tune or "all"  # None: a run from before --tune, which trained everything
    width = head_width(config.method, tune, config.embed_dim)
    if width != "none":
        head = FeatureHead(net.feature_dim, width)
        net.set_head(head, head.out_dim)
    net.set_tune(tune)


def last_stage_prefix(backbone_name: str, backbone: nn.Module) -> str:
    """The module name where the backbone's last stage starts (conv4: "3", torchvision ResNets:
    "layer4", timm: its ``feature_info``'s last module, e.g. "blocks.6")."""
    if backbone_name == "conv4":
        return "3"
    info = getattr(backbone, "feature_info", None)
    if info is not None:
        try:
            return str(info[-1]["module"])
        except (IndexError, KeyError, TypeError):
            pass  # a timm model without stage information: try the torchvision names below
    names = dict(backbone.named_modules())
    for candidate in ("layer4", "stages", "blocks", "layers"):
        if candidate in names:
            module = names[candidate]
            children = list(module.named_children())
            return f"{candidate}.{children[-1][0]}" if candidate != "layer4" and children else candidate
    raise InputError(f"--tune last: cannot find the last stage of {backbone_name}; use --tune all or head")


def frozen_parts(
    backbone: nn.Module, tune: str, prefix: str | None
) -> tuple[list[nn.Parameter], list[nn.Module]]:
    """(parameters to freeze, modules to keep in eval mode) of ``backbone`` for ``tune``.

    ``head``: all of it. ``last``: the parameters registered before the module ``prefix`` (the last
    stage), and the modules before it that hold no trainable parameter (not only leaves: timm's
    BatchNormAct2d is a BatchNorm with children); ``prefix`` and what follows train. ``all``: nothing.
    """
    if tune == "all":
        return [], []
    if tune == "head":
        return list(backbone.parameters()), [backbone]
    params = list(backbone.named_parameters())
    modules = list(backbone.named_modules())

    def starts(name: str) -> bool:
        return name == prefix or name.startswith(f"{prefix}.")

    first_param = next((i for i, (n, _) in enumerate(params) if starts(n)), len(params))
    first_module = next((i for i, (n, _) in enumerate(modules) if starts(n)), len(modules))
    trainable = {id(p) for _, p in params[first_param:]}
    frozen_modules = [
        m for _, m in modules[:first_module] if not any(id(p) in trainable for p in m.parameters())
    ]
    return [p for _, p in params[:first_param]], frozen_modules
