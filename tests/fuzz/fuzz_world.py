"""The fixtures every fuzz case draws on, built once: a tiny model pair, valid tiles and scenes, a tiny
finished training run, a malicious checkpoint. No torch for the runtime part (``runtime_fixtures``)."""

from __future__ import annotations

import io
import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from runtime_fixtures import COLOURS, EUROSAT, LANDSAT, NAIP, colour_pair, uniform_tile, write_geotiff

# A tiny training run: conv4 on the embedded synthetic set, a few episodes (about 3 s on one core).
TINY_TRAIN = [
    "--image-size", "16", "--ret-episodes", "4", "--acf-episodes", "2", "--val-every", "2",
    "--log-every", "2", "--no-progress", "--no-cache", "--svm-c", "1", "--threads", "1",
]  # fmt: skip
DISK_BYTES = 2 << 20  # the full-disk tmpfs: a model pair (~0.5 MiB) fits when it is empty
SCENE_SIDE = 128  # the small GeoTIFF scene: 4 x 4 tiles of 32 px, one class colour per quadrant


@dataclass
class World:
    """root: scratch space; model/head: the colour pair (input 32x32, 4 classes, SVM head);
    tiles: suffix -> bytes of a valid tile of class 0; real_tiles: EuroSAT JPEGs (empty when absent);
    scene: a small quadrant GeoTIFF; real_scenes: the shared Landsat/NAIP scenes present;
    run: a tiny finished training run (None when torch is not installed); evil: a .pt whose unpickling
    would create ``marker``. Call :meth:`close` at the end (unmounts ``disk``)."""

    root: Path
    model: Path
    head: Path
    tiles: dict[str, bytes]
    real_tiles: list[Path]
    scene: Path
    real_scenes: list[Path]
    run: Path | None
    evil: Path | None
    marker: Path
    disk: Path | None = None  # a small mounted tmpfs for full-disk cases (None where mounting fails)
    _counter: itertools.count = field(default_factory=itertools.count)

    def scratch(self, name: str) -> Path:
        """A new empty folder for one case."""
        folder = self.root / "cases" / f"{next(self._counter):05d}-{name}"
        folder.mkdir(parents=True)
        return folder

    def close(self) -> None:
        if self.disk is not None:
            subprocess.run(["umount", str(self.disk)], capture_output=True, check=False)
            self.disk = None

    def valid_tile(self, label: int, suffix: str = ".png") -> bytes:
        return encode(uniform_tile(label), suffix)


def encode(pixels: np.ndarray, suffix: str, mode: str | None = None, **params) -> bytes:
    """``pixels`` encoded as ``suffix`` (Pillow), optionally converted to ``mode`` first."""
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format={".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF"}[suffix], **params)
    return buffer.getvalue()


def quadrant_scene(side: int = SCENE_SIDE) -> np.ndarray:
    """uint8 [side, side, 3]: classes 0, 1 (top), 2, 3 (bottom) as uniform quadrants."""
    half = side // 2
    pixels = np.empty((side, side, 3), np.uint8)
    for label, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        pixels[r * half : (r + 1) * half, c * half : (c + 1) * half] = COLOURS[label]
    return pixels


def _evil_checkpoint(folder: Path, marker: Path) -> Path | None:
    """A torch checkpoint whose unpickling would run ``open(marker, "w")`` (it must never run)."""
    try:
        import torch
    except ImportError:
        return None

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = folder / "evil.pt"
    torch.save({"model": Evil(), "episode": 1}, path)
    return path


def _train_run(folder: Path) -> Path | None:
    try:
        from rfmml.trainer.cli import main as train
    except ImportError:
        return None
    run = folder / "run"
    code = train(["--out", str(run), *TINY_TRAIN])
    if code != 0:
        raise RuntimeError(f"the fuzz suite's tiny training run failed (exit {code})")
    return run


def mount_small_disk(path: Path, size: int = DISK_BYTES) -> Path | None:
    """A ``size``-byte tmpfs mounted at ``path`` (None where mounting is not allowed: not root)."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return None
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, check=False)  # fmt: skip
    return path if done.returncode == 0 else None


def build_world(root: Path, train: bool = True, disk: bool = True) -> World:
    """Everything the generators need, under ``root`` (train=False: no training run, for speed;
    disk=False: no tmpfs). Call ``world.close()`` when done."""
    root.mkdir(parents=True, exist_ok=True)
    pair = root / "pair"
    pair.mkdir(exist_ok=True)
    model = colour_pair(pair)
    tiles = {suffix: encode(uniform_tile(0), suffix) for suffix in (".jpg", ".png", ".tif")}
    real_tiles = sorted(EUROSAT.glob("*/*.jpg"))[::500] if EUROSAT.is_dir() else []
    scene = write_geotiff(root / "scene.tif", quadrant_scene())
    marker = root / "PICKLE_RAN"
    evil = _evil_checkpoint(root, marker) if train else None
    run = _train_run(root) if train else None
    small_disk = mount_small_disk(root / "small-disk") if disk else None
    return World(root, model, model.with_suffix(".npz"), tiles, real_tiles, scene,
                 [p for p in (LANDSAT, NAIP) if p.is_file()], run, evil, marker, small_disk)  # fmt: skip


def fresh_copy(source: Path, target: Path) -> Path:
    """A copy of a file or folder (a case may damage it)."""
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
    return target
