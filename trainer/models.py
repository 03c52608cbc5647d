"""Embedding networks: uint8 NHWC images in, float embeddings [B, D] out.

The pre-processing (cast, scale to [0, 1], mean/std normalisation, NHWC -> NCHW) is part of the
module, so the ONNX export carries it and the runtime feeds decoded pixels unchanged. NHWC input
permuted to NCHW is already channels_last in memory, which is what cuDNN wants.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import torch
from torch import nn

from rfmml.runtime.errors import InputError

BACKBONES = ("wide_resnet50_2", "resnet18", "resnet50", "conv4", "efficientnet_lite0")
TIMM_PREFIX = "timm:"  # "timm:<name>": any timm model, pooled features (num_classes=0), never downloaded
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsUnavailableError(InputError):
    """Pretrained weights were asked for but are neither cached, reachable nor given as a file."""


def check_backbone_name(name: str) -> str:
    """Return ``name`` if it names a backbone (one of BACKBONES or ``timm:<model>``); else InputError.

    A ``timm:`` name is checked against timm's registry (a pretrained tag such as ``.a1_in1k`` is
    allowed; the weights are never downloaded).
    """
    choices = f"choose one of {', '.join(BACKBONES)} or timm:<name> (any timm model, e.g. timm:resnet18)"
    if not isinstance(name, str) or not name:
        raise InputError(f"--backbone must be a non-empty name; {choices}")
    if name in BACKBONES:
        return name
    if not name.startswith(TIMM_PREFIX):
        raise InputError(f"unknown --backbone {name!r}; {choices}")
    model_name = name[len(TIMM_PREFIX) :]
    timm = _import_timm()
    if not model_name or not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3) if model_name else []
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise InputError(f"unknown timm model {model_name!r} in --backbone {name!r}{hint}")
    return name


def _import_timm():  # noqa: ANN202 - the timm module
    try:
        import timm
    except ImportError:
        raise InputError("timm backbones need the timm package: pip install 'rfmml[train]'") from None
    return timm


class Preprocess(nn.Module):
    """uint8 [B, H, W, 3] -> normalised float [B, 3, H, W] (channels_last memory)."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("scale", (1.0 / (255.0 * torch.tensor(std))).view(1, 3, 1, 1))
        self.register_buffer("shift", (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(self.scale.dtype)
        return x * self.scale + self.shift


def conv4(out_channels: int = 64) -> nn.Sequential:
    """The few-shot Conv-4 backbone: 4 x (conv3x3, BN, ReLU, maxpool), then global average pool."""

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(3, out_channels),
        block(out_channels, out_channels),
        block(out_channels, out_channels),
        block(out_channels, out_channels),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def _torchvision_resnet(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    weights = None
    if pretrained:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            model = torchvision.models.get_model(name, weights=weights)
        except (OSError, RuntimeError) as error:  # URLError is an OSError: offline and not cached
            raise WeightsUnavailableError(
                f"ImageNet weights for {name} are not in torch's cache ({torch.hub.get_dir()}) and cannot "
                f"be downloaded ({type(error).__name__}); pass --weights FILE, or --no-pretrained to "
                "train from scratch"
            ) from None
    else:
        model = torchvision.models.get_model(name, weights=None)
    model.fc = nn.Identity()  # cut before the classifier: global-average-pooled features
    return model


def load_weights_file(backbone: nn.Module, path: str | Path) -> None:
    """Load a state dict (plain tensors, ``weights_only=True``) into ``backbone``; ignore a ``fc.``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad file; report it in one line
        raise WeightsUnavailableError(f"{path}: not a loadable weights file ({error})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    state = {k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing:
        raise WeightsUnavailableError(f"{path}: weights do not fit this backbone (missing {missing[:3]}...)")


class EmbeddingNet(nn.Module):
    """Preprocess + backbone. Input uint8 [B, H, W, 3]; output float [B, embedding_dim]."""

    def __init__(self, backbone: nn.Module, embedding_dim: int, backbone_name: str):
        super().__init__()
        self.preprocess = Preprocess()
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.backbone_name = backbone_name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(images)).float()


def build_embedding_net(
    backbone: str, pretrained: bool = False, weights: str | Path | None = None
) -> EmbeddingNet:
    """Build the embedding network named ``backbone`` (one of BACKBONES).

    ``weights`` (a state-dict file) wins over ``pretrained`` (torchvision's cached ImageNet weights).
    conv4 has no ImageNet weights; asking for them is an error.
    """
    check_backbone_name(backbone)
    if backbone == "efficientnet_lite0" or backbone.startswith(TIMM_PREFIX):
        if pretrained and weights is None:
            raise WeightsUnavailableError(
                f"ImageNet weights for {backbone} are not available yet: use --weights"
            )
        name = backbone.removeprefix(TIMM_PREFIX)
        net = _import_timm().create_model(name, pretrained=False, num_classes=0)
        dim = int(net.num_features)
    elif backbone == "conv4":
        if pretrained and weights is None:
            raise WeightsUnavailableError("conv4 has no ImageNet weights: use --no-pretrained or --weights")
        net, dim = conv4(), 64
    else:
        net = _torchvision_resnet(backbone, pretrained and weights is None)
        dim = {"resnet18": 512, "resnet50": 2048, "wide_resnet50_2": 2048}[backbone]
    if weights is not None:
        load_weights_file(net, weights)
    return EmbeddingNet(net, dim, backbone)
