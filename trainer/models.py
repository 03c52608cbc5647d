"""Embedding networks: uint8 NHWC images in, float embeddings [B, D] out.

The pre-processing (cast, scale to [0, 1], mean/std normalisation, NHWC -> NCHW) is part of the
module, so the ONNX export carries it and the runtime feeds decoded pixels unchanged. NHWC input
permuted to NCHW is already channels_last in memory, which is what cuDNN wants.

Backbones come from ``rfmml.trainer.backbones`` (names), their weights from
``rfmml.trainer.pretrained`` (offline ImageNet) or ``rfmml.trainer.weight_files`` (``--weights``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rfmml.trainer.backbones import (
    BACKBONES,
    TIMM_PREFIX,
    TORCHVISION_RESNETS,
    build_backbone,
    check_backbone_name,
    conv4,
)
from rfmml.trainer.pretrained import load_efficientnet_lite0_imagenet
from rfmml.trainer.weight_files import WeightsFileError, WeightsUnavailableError, load_weights_file

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TIMM_PREFIX",
    "EmbeddingNet",
    "Preprocess",
    "WeightsFileError",
    "WeightsUnavailableError",
    "build_embedding_net",
    "check_backbone_name",
    "conv4",
    "load_weights_file",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W] (channels_last memory)."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("scale", (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1))
        self.register_buffer("shift", (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(self.scale.dtype)
        return x * self.scale + self.shift


def _torchvision_imagenet(name: str) -> nn.Module:
    """A torchvision ResNet with ImageNet weights from torch's cache (never a silent download failure)."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as error:  # URLError is an OSError: offline and not cached
        raise WeightsUnavailableError(
            f"ImageNet weights for {name} are not in torch's cache ({torch.hub.get_dir()}) and cannot "
            f"be downloaded ({type(error).__name__}); pass --weights FILE, or --no-pretrained to "
            "train from scratch"
        ) from None
    model.fc = nn.Identity()  # cut before the classifier: global-average-pooled features
    return model


def _imagenet_backbone(name: str) -> tuple[nn.Module, int]:
    """The backbone ``name`` with ImageNet weights and its feature dim; WeightsUnavailableError if none."""
    if name == "efficientnet_lite0":
        model, dim = build_backbone(name)
        load_efficientnet_lite0_imagenet(model)
        return model, dim
    if name in TORCHVISION_RESNETS:
        return _torchvision_imagenet(name), TORCHVISION_RESNETS[name]
    if name.startswith(TIMM_PREFIX):
        raise WeightsUnavailableError(
            f"{name}: timm's ImageNet weights are a download, which rfmml never does: pass --weights FILE "
            "(a timm, torchvision or .safetensors state dict), or --no-pretrained to train from scratch"
        )
    raise WeightsUnavailableError(f"{name} has no ImageNet weights: use --no-pretrained or --weights FILE")


class EmbeddingNet(nn.Module):
    """Preprocess + backbone + head. Input uint8 [B, H, W, 3]; output float [B, embedding_dim].

    The head is the identity (the backbone's pooled features are the embedding) unless
    :meth:`set_head` puts a :class:`~rfmml.trainer.tuning.FeatureHead` there (``--tune head``, or
    ``--embed-dim``). :meth:`set_tune` freezes part of the backbone: its parameters stop taking
    gradients and its modules stay in eval mode through ``train()``.
    """

    def __init__(self, backbone: nn.Module, embedding_dim: int, backbone_name: str):
        super().__init__()
        self.preprocess = Preprocess()
        self.backbone = backbone
        self.head: nn.Module = nn.Identity()
        self.feature_dim = embedding_dim
        self.embedding_dim = embedding_dim
        self.backbone_name = backbone_name
        self.tune = "all"
        self._frozen_modules: list[nn.Module] = []  # a plain list: not registered a second time

    def set_head(self, head: nn.Module, embedding_dim: int) -> None:
        """Put ``head`` (pooled features [B, feature_dim] -> [B, embedding_dim]) after the backbone."""
        self.head = head
        self.embedding_dim = embedding_dim

    def set_tune(self, tune: str) -> None:
        """Freeze the backbone's parts that ``tune`` ("head", "last", "all") does not train."""
        from rfmml.trainer.tuning import frozen_parts, last_stage_prefix

        prefix = last_stage_prefix(self.backbone_name, self.backbone) if tune == "last" else None
        params, modules = frozen_parts(self.backbone, tune, prefix)
        for param in params:
            param.requires_grad_(False)
        self._frozen_modules = modules
        self.tune = tune
        self.train(self.training)

    def train(self, mode: bool = True) -> EmbeddingNet:
        super().train(mode)
        for module in self._frozen_modules:  # frozen BatchNorm statistics never move
            module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, 3] -> the backbone's pooled features float32 [B, feature_dim]."""
        return self.backbone(self.preprocess(images)).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images)).float()


def build_embedding_net(
    backbone: str, pretrained: bool = False, weights: str | Path | None = None
) -> EmbeddingNet:
    """Build the embedding network named ``backbone`` (one of BACKBONES or ``timm:<model>``).

    ``weights`` (a state-dict file in torchvision, timm, efficientnet_pytorch or rfmml naming) wins
    over ``pretrained`` (offline ImageNet weights: the packaged file for efficientnet_lite0, torch's
    cache for the torchvision ResNets; none for conv4 and ``timm:`` names, which is an error).
    Raises InputError for an unknown name and WeightsUnavailableError (an InputError) for weights.
    """
    check_backbone_name(backbone)
    if pretrained and weights is None:
        net, dim = _imagenet_backbone(backbone)
    else:
        net, dim = build_backbone(backbone)
        if weights is not None:
            load_weights_file(net, weights, backbone)
    return EmbeddingNet(net, dim, backbone)
