"""Augmentation on the device: a random element of the dihedral group (flips and 90-degree
rotations) per image, applied to a uint8 NHWC batch with one gather (aerial scenes have no "up")."""

from __future__ import annotations

import torch


def dihedral_index(size: int, device: torch.device | str) -> torch.Tensor:
    """int64 [8, size * size]: for each of the 8 symmetries of a square, the source pixel of each
    output pixel (flat row-major index). Element t: rotate by 90 * (t % 4) degrees, then flip
    left-right when t >= 4."""
    grid = torch.arange(size * size, device=device).view(size, size)
    maps = []
    for flip in (False, True):
        for rot in range(4):
            g = torch.rot90(grid, rot, dims=(0, 1))
            maps.append((g.flip(1) if flip else g).reshape(-1))
    return torch.stack(maps)


class Augmenter:
    """Random flips/rotations per image for square uint8 [B, S, S, C] batches."""

    def __init__(self, size: int, device: torch.device | str):
        self.size = size
        self.index = dihedral_index(size, device)  # [8, S*S]

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """images uint8 [B, S, S, C] -> uint8 [B, S, S, C], each image transformed independently."""
        b, h, w, c = images.shape
        if h != self.size or w != self.size:
            raise ValueError(f"augmenter built for {self.size} px, got {h}x{w}")
        t = torch.randint(0, 8, (b,), generator=generator, device=images.device)
        src = self.index[t]  # [B, S*S]
        flat = images.reshape(b, h * w, c)
        return flat.gather(1, src[:, :, None].expand(b, h * w, c)).view(b, h, w, c)
