"""Generator of ``rfmml-train`` cases on a training-data folder holding bad files (``--data``)."""

from __future__ import annotations

import os

import numpy as np
from fuzz_bytes import mutate, png_bomb, random_bytes
from fuzz_cases_files import odd_name, odd_tile, suffix_of
from fuzz_checks import no_temp_files
from fuzz_harness import Case
from fuzz_world import World, encode
from runtime_fixtures import COLOURS, NAMES

TRAIN_DATA_ARGS = (
    "--backbone", "conv4", "--no-pretrained", "--image-size", "16", "--train-frac", "0.5",
    "--minority-classes", "1", "--minority-shots", "2", "--ret-episodes", "2", "--acf-episodes", "2",
    "--val-every", "2", "--log-every", "2", "--no-progress", "--no-cache", "--svm-c", "1", "--threads", "1",
)  # fmt: skip


def train_data(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A tiny ImageFolder (4 classes x 8 tiles) with 1-3 bad files (random bytes, damaged, odd mode, odd
    name; a header bomb in seeds 1, 5, 9, ..., run under the address-space limit): rfmml-train skips
    them (listed) or refuses with one line naming the file, never a crash."""
    work = world.scratch("train-data")
    data = work / "data"
    for label, name in enumerate(NAMES):
        (data / name).mkdir(parents=True)
        for i in range(8):
            pixels = np.clip(COLOURS[label].astype(int) + rng.integers(-20, 21, (16, 16, 3)), 0, 255)
            (data / name / f"{i}.png").write_bytes(encode(pixels.astype(np.uint8), ".png"))
    bomb = seed % 4 == 1
    notes = []
    for i in range(1 if bomb else int(rng.integers(1, 4))):
        folder = data / NAMES[int(rng.integers(0, 4))]
        what, name, content = _bad_training_file(world, rng, i, bomb)
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            handle.write(content)
        notes.append(what)
    argv = ["--data", str(data), "--out", str(work / "run"), "--seed", str(seed % 7), *TRAIN_DATA_ARGS]
    return Case("train-data", seed, "train", argv, "any", [no_temp_files(work / "run")], memory=bomb,
                limit_s=90 if bomb else 45, note=", ".join(notes), workdir=work)  # fmt: skip


def _bad_training_file(
    world: World, rng: np.random.Generator, index: int, bomb: bool
) -> tuple[str, bytes, bytes]:
    if bomb:
        return "png bomb 60000^2", b"bomb.png", png_bomb()
    pick = int(rng.integers(0, 4))
    if pick == 0:
        return "random bytes", f"junk{index}{suffix_of(rng)}".encode(), random_bytes(rng, 0, 1024)
    if pick == 1:
        suffix = suffix_of(rng)
        kind, data = mutate(rng, world.tiles[suffix])
        return f"{kind}{suffix}", f"damaged{index}{suffix}".encode(), data
    if pick == 2:
        suffix, data, what = odd_tile(rng)
        return what, f"odd{index}{suffix}".encode(), data
    name = odd_name(rng, index)
    return f"name {ascii(name)}", name, world.valid_tile(0, ".png")
