"""The embedded default: a seeded, procedurally generated set of aerial-like texture classes.

Eight classes (alphabetical = label order): buildings (a rotated grid of roofs), cropland (rotated
stripes), desert (warped dunes), forest (dark, blotchy canopy), meadow (smooth light green), pivots
(centre-pivot irrigation circles), roads (a few straight roads on fields), water (smooth blue with
ripples). Every tile gets a random orientation, colour jitter, brightness and pixel noise, and pairs of
classes share colours (forest/meadow, cropland/roads, desert/pivots), so the set is learnable but not
trivial. Everything is numpy; a tile is rendered directly at the requested size.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from PIL import Image

CLASS_NAMES = ("buildings", "cropland", "desert", "forest", "meadow", "pivots", "roads", "water")
IMAGES_PER_CLASS = 120  # the synthetic split takes 40 test, 20 val, 60 train (5 for minority classes)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1], float32 [size, size]: a random cells x cells grid, bilinear upsampled."""
    low = rng.random((cells, cells), dtype=np.float32)
    return np.asarray(Image.fromarray(low, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], amount: float = 18.0) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32) + rng.normal(0.0, amount, 3).astype(np.float32)


def _mix(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel blend: mask [H, W] in [0, 1] picks colour a (1) or b (0) -> [H, W, 3]."""
    return mask[..., None] * a + (1.0 - mask[..., None]) * b


class _Coords(NamedTuple):
    """Pixel coordinates of a tile, float32 [size, size] in [0, 1): x, y, and rotated u, v."""

    xx: np.ndarray
    yy: np.ndarray
    u: np.ndarray
    v: np.ndarray
    size: int


def _water(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    ripple = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 9) * c.u + 3 * _smooth_noise(rng, c.size, 4))
    mask = 0.7 * _smooth_noise(rng, c.size, 3) + 0.3 * ripple
    return _mix(mask, _jitter(rng, (50, 90, 140)), _jitter(rng, (30, 60, 110)))


def _forest(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    mask = _smooth_noise(rng, c.size, max(4, c.size // 3)) ** 1.5
    return _mix(mask, _jitter(rng, (60, 110, 50)), _jitter(rng, (25, 55, 30)))


def _meadow(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    mask = _smooth_noise(rng, c.size, 3)
    return _mix(mask, _jitter(rng, (95, 140, 60)), _jitter(rng, (70, 115, 50)))


def _cropland(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    freq = rng.uniform(3, 7)
    mask = (np.sin(2 * np.pi * freq * c.u) > rng.uniform(-0.3, 0.3)).astype(np.float32)
    return _mix(mask, _jitter(rng, (110, 140, 60)), _jitter(rng, (140, 115, 80)))


def _buildings(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    period = rng.uniform(0.18, 0.3)
    fu, fv = (c.u / period) % 1.0, (c.v / period) % 1.0
    mask = ((fu > 0.25) & (fv > 0.25)).astype(np.float32)
    return _mix(mask, _jitter(rng, (150, 90, 80), 30), _jitter(rng, (120, 120, 120)))


def _roads(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    base = _mix(_smooth_noise(rng, c.size, 3), _jitter(rng, (110, 140, 60)), _jitter(rng, (140, 115, 80)))
    mask = np.zeros((c.size, c.size), np.float32)
    for _ in range(rng.integers(1, 3)):
        angle = rng.uniform(0, np.pi)
        dist = np.abs(c.xx * np.cos(angle) + c.yy * np.sin(angle) - rng.uniform(0.2, 0.8))
        mask = np.maximum(mask, (dist < rng.uniform(0.03, 0.07)).astype(np.float32))
    return _mix(mask, _jitter(rng, (125, 125, 125), 10), base)


def _desert(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    warp = 2.0 * _smooth_noise(rng, c.size, 3)
    mask = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 4) * c.u + warp)
    return _mix(mask, _jitter(rng, (210, 180, 130)), _jitter(rng, (170, 140, 95)))


def _pivots(rng: np.random.Generator, c: _Coords) -> np.ndarray:
    img = np.broadcast_to(_jitter(rng, (170, 140, 95)), (c.size, c.size, 3)).copy()
    for _ in range(rng.integers(1, 4)):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.3)
        inside = ((c.yy - cy) ** 2 + (c.xx - cx) ** 2) < r * r
        img[inside] = _jitter(rng, (90, 130, 55))
    return img


# class name -> renderer: float [size, size, 3] before brightness and noise
_RENDERERS = {
    "water": _water,
    "forest": _forest,
    "meadow": _meadow,
    "cropland": _cropland,
    "buildings": _buildings,
    "roads": _roads,
    "desert": _desert,
    "pivots": _pivots,
}


def render_class_tile(class_index: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Render one tile of class ``CLASS_NAMES[class_index]``: uint8 [size, size, 3]."""
    if not 0 <= class_index < len(CLASS_NAMES):
        raise ValueError(f"unknown class index {class_index}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)  # rotated coordinates
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    img = _RENDERERS[CLASS_NAMES[class_index]](rng, _Coords(xx, yy, u, v, size))
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0.0, rng.uniform(6, 14), img.shape)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _dataset(seed: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 7919])
    images = np.empty((len(CLASS_NAMES) * IMAGES_PER_CLASS, image_size, image_size, 3), np.uint8)
    labels = np.repeat(np.arange(len(CLASS_NAMES)), IMAGES_PER_CLASS)
    for i, label in enumerate(labels):
        images[i] = render_class_tile(int(label), rng, image_size)
    images.setflags(write=False)
    return images, labels


def make_synthetic_dataset(seed: int, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All synthetic images (uint8 [N, H, W, 3], read-only), labels int64 [N] and class names.

    Image ``i`` of class ``c`` sits at index ``c * IMAGES_PER_CLASS + i``; the same (seed, size) always
    gives the same pixels.
    """
    images, labels = _dataset(int(seed), int(image_size))
    return images, labels.astype(np.int64), list(CLASS_NAMES)


def synthetic_files() -> dict[str, list[str]]:
    """The synthetic set as a "folder": {class: ["class/0000", ...]} (names, not files)."""
    return {c: [f"{c}/{i:04d}" for i in range(IMAGES_PER_CLASS)] for c in CLASS_NAMES}


def synthetic_index(name: str) -> int:
    """Row of ``class/iiii`` in :func:`make_synthetic_dataset`'s arrays."""
    cls, _, idx = name.partition("/")
    return CLASS_NAMES.index(cls) * IMAGES_PER_CLASS + int(idx)
