"""Frozen-backbone features, computed once per image (and per kept augmentation) and cached on disk.

``--tune head`` and ``--method frozen`` never run the backbone while training: its pooled features
of every image are computed once, by :func:`extract_features`, and kept in ``cache_dir/features`` as
one ``.npy`` per (backbone weights, decoded images, views). The key is a SHA-256 of

- the backbone's weights digest (:func:`weights_digest`: every tensor of the pre-processing and the
  backbone, names, dtypes, shapes and bytes), so other weights never reuse these features;
- the decoded images' digest (:func:`images_digest`: the uint8 pixels themselves, so it covers what
  the decoded-image cache key covers, each file's path/size/mtime and the image size, and also the
  synthetic set, which has no files);
- the number of views: 1 (the image as it is) or 8 (the dihedral group of ``augment.py``, in its
  order, for ``--augment``: a training step then picks one view per image, as the image augmentation
  would have picked one transform).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rfmml.runtime.atomic_files import atomic_write
from rfmml.trainer.augment import dihedral_index

CACHE_VERSION = "rfmml-features-v1"
DIHEDRAL_VIEWS = 8


def weights_digest(net: torch.nn.Module) -> str:
    """SHA-256 over the pre-processing's and the backbone's tensors (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for part in (net.preprocess, net.backbone):
        for name, tensor in part.state_dict().items():
            t = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def images_digest(images: torch.Tensor) -> str:
    """SHA-256 over a uint8 [N, S, S, 3] tensor's shape and pixels."""
    array = np.ascontiguousarray(images.cpu().numpy())
    digest = hashlib.sha256(f"{CACHE_VERSION}|{array.shape}|".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def dihedral_views(images: torch.Tensor, view: int) -> torch.Tensor:
    """The ``view``-th dihedral transform (augment.py's numbering) of uint8 [B, S, S, C] images."""
    b, s, _, c = images.shape
    index = dihedral_index(s, images.device)[view]
    return images.reshape(b, s * s, c)[:, index].view(b, s, s, c)


@torch.no_grad()
def extract_features(
    net: torch.nn.Module,
    images: torch.Tensor,
    views: int,
    batch_size: int,
    device: torch.device,
    tick: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Pooled backbone features float32 [N, views, F] on the CPU (eval mode, no grad, fp32 everywhere)."""
    was_training = net.training
    net.eval()
    out = torch.zeros(images.shape[0], views, net.feature_dim)
    try:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            for view in range(views):
                # fp32, as the exported model computes them (bf16 would move ties between the cached
                # features the head trains on and what the runtime embeds)
                with torch.autocast(device.type, enabled=False):
                    out[start : start + batch.shape[0], view] = net.features(
                        dihedral_views(batch, view)
                    ).cpu()
                if tick is not None:
                    tick(batch.shape[0])
    finally:
        net.train(was_training)
    return out


def cache_path(cache_dir: Path, net: torch.nn.Module, images: torch.Tensor, views: int) -> Path:
    key = hashlib.sha256(
        f"{CACHE_VERSION}|{weights_digest(net)}|{images_digest(images)}|{views}".encode()
    ).hexdigest()
    return cache_dir / "features" / f"{key[:32]}.npy"


def cached_features(
    net: torch.nn.Module,
    images: torch.Tensor,
    views: int,
    cache_dir: Path | None,
    batch_size: int,
    device: torch.device,
    tick: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, bool]:
    """(features float32 [N, views, F], found in the cache); computed and stored when not found.

    ``cache_dir`` None: no cache. An unreadable or ill-shaped cache file is recomputed (a warning);
    a cache folder that cannot be written does not stop training (a warning)."""
    path = cache_path(cache_dir, net, images, views) if cache_dir is not None else None
    shape = (images.shape[0], views, net.feature_dim)
    if path is not None and path.is_file():
        try:
            array = np.load(path, allow_pickle=False)
            if array.shape == shape and array.dtype == np.float32:
                return torch.from_numpy(array), True
        except (OSError, ValueError) as error:
            warnings.warn(f"ignoring unreadable feature cache {path} ({error})", stacklevel=2)
    features = extract_features(net, images, views, batch_size, device, tick)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)

            def write(tmp: Path) -> None:
                with open(tmp, "wb") as handle:
                    np.save(handle, features.numpy(), allow_pickle=False)

            atomic_write(path, write)
        except OSError as error:
            warnings.warn(f"could not write the feature cache in {path.parent} ({error})", stacklevel=2)
    return features, False
