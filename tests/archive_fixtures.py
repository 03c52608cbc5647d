"""A small scene archive for the multi-scene tests: the colour model, three GeoTIFF scenes of known
labels (one row shifted per scene) and one corrupt scene."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from runtime_fixtures import colour_pair, uniform_tile, write_geotiff

from rfmml.runtime import SKIPPED

# Labels per grid cell of a scene (-1: a black nodata tile): 3 x 5 tiles of 32 px.
LABELS = np.array([[0, 1, 2, 3, -1], [1, 2, 3, 0, 1], [2, 3, -1, 1, 2]])


def mosaic(labels: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 [rows*size, cols*size, 3]: one uniform tile per label (-1 = black)."""
    black = np.zeros((size, size, 3), np.uint8)
    rows = [np.concatenate([uniform_tile(v, (size, size)) if v >= 0 else black for v in line], axis=1)
            for line in labels]  # fmt: skip
    return np.concatenate(rows, axis=0)


@dataclass(frozen=True)
class Archive:
    model: Path
    scenes: list[Path]  # the three good scenes
    corrupt: Path
    expected: list[np.ndarray]  # class map uint8 [3, 5] of each good scene

    @property
    def all_scenes(self) -> list[Path]:
        return [*self.scenes, self.corrupt]


def make_archive(folder: Path) -> Archive:
    """Write the model pair and the scenes into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model = colour_pair(folder)
    scenes, expected = [], []
    for index in range(3):
        labels = np.roll(LABELS, index, axis=1)
        scenes.append(write_geotiff(folder / f"scene{index}.tif", mosaic(labels)))
        expected.append(np.where(labels < 0, SKIPPED, labels).astype(np.uint8))
    corrupt = folder / "corrupt.tif"
    corrupt.write_bytes(scenes[0].read_bytes()[:300])  # a valid TIFF header, then nothing
    return Archive(model, scenes, corrupt, expected)
