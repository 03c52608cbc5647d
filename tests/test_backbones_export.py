"""Export parity of the new backbones: torch eager vs onnxruntime on the artifact contract.

efficientnet_lite0 with its ImageNet weights (TF "same" padding becomes explicit Pad nodes at a fixed
input size) and a ``timm:`` backbone; the uint8 NHWC -> float32 embeddings contract is unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmml.export.onnx_export import check_onnx, export_onnx
from rfmml.export.parity import compare, embed_in_batches, ort_embedder, ort_session, torch_embedder
from rfmml.trainer.models import build_embedding_net


def _images(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial running statistics, as after training (random init has mean 0, var 1)."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)


@pytest.mark.parametrize(
    ("backbone", "pretrained", "size", "dim"),
    [
        ("efficientnet_lite0", True, (64, 64), 1280),
        ("timm:resnet18", False, (40, 56), 512),  # not square: H and W must not be swapped
    ],
)
def test_onnxruntime_equals_torch(backbone, pretrained, size, dim):
    torch.manual_seed(0)
    model = build_embedding_net(backbone, pretrained=pretrained)
    if not pretrained:
        _randomise_batchnorm(model)
    model.eval()
    data = export_onnx(model, size)
    check_onnx(data)
    images = _images(7, size)
    batches = [1, 2, 4]
    reference = embed_in_batches(torch_embedder(model), images, batches)
    candidate = embed_in_batches(ort_embedder(ort_session(data, threads=1)), images, batches)
    assert candidate.shape == reference.shape == (7, dim) and candidate.dtype == np.float32
    report = compare(reference, candidate, batch_sizes=batches, rel_tolerance=1e-4)
    assert report.passed, report.summary()
    assert np.abs(reference[0] - reference[1]).max() > 1e-3  # the embeddings carry the images
