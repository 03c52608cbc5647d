"""Backbone registry: a name -> a feature extractor float [B, 3, H, W] -> pooled features [B, D].

Names: the ones in ``BACKBONES`` and ``timm:<model>`` (any timm model, built with ``num_classes=0`` so
it ends in global pooling). Everything here builds at random init and never touches the network;
ImageNet weights come from ``rfmml.trainer.pretrained`` (offline) or a ``--weights`` file.
"""

from __future__ import annotations

import difflib
from types import ModuleType

from torch import nn

from rfmml.runtime.errors import InputError

BACKBONES = ("wide_resnet50_2", "resnet18", "resnet50", "conv4", "efficientnet_lite0")
TORCHVISION_RESNETS = {"resnet18": 512, "resnet50": 2048, "wide_resnet50_2": 2048}  # name -> feature dim
TIMM_PREFIX = "timm:"  # "timm:<name>": any timm model, pooled features (num_classes=0), never downloaded

# efficientnet_lite0's only offline ImageNet weights were trained in TensorFlow: they need TF's "same"
# padding and BatchNorm eps 1e-3, which timm builds as tf_efficientnet_lite0 (the same tensor names and
# shapes as timm's efficientnet_lite0). Frozen, nearest-prototype on EuroSAT (10 classes, 20 support /
# 60 query each): 79.2 % at 128 px and 76.7 % at 64 px, against 70.7 % and 55.7 % with PyTorch padding.
EFFICIENTNET_LITE0_TIMM_ARCH = "tf_efficientnet_lite0"


def import_timm() -> ModuleType:
    """The timm module, or an InputError that says how to install it."""
    try:
        import timm
    except ImportError:
        raise InputError("timm backbones need the timm package: pip install 'rfmml[train]'") from None
    return timm


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
    timm = import_timm()
    if not model_name or not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3) if model_name else []
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise InputError(f"unknown timm model {model_name!r} in --backbone {name!r}{hint}")
    return name


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


def timm_backbone(model_name: str) -> tuple[nn.Module, int]:
    """A timm model at random init without its classifier (``num_classes=0``: pooled features)."""
    model = import_timm().create_model(model_name, pretrained=False, num_classes=0)
    return model, int(model.num_features)


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """The backbone ``name`` at random init (torchvision ResNets without ``fc``) and its feature dim."""
    check_backbone_name(name)
    if name == "conv4":
        return conv4(), 64
    if name == "efficientnet_lite0":
        return timm_backbone(EFFICIENTNET_LITE0_TIMM_ARCH)
    if name.startswith(TIMM_PREFIX):
        return timm_backbone(name[len(TIMM_PREFIX) :])
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    model.fc = nn.Identity()  # cut before the classifier: global-average-pooled features
    return model, TORCHVISION_RESNETS[name]
