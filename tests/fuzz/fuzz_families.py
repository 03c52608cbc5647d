"""The registry of fuzz families: name -> (generator, fast CI count). ``make_case(family, seed, world)``
rebuilds any case exactly from its (family, seed): the generator draws from ``default_rng(seed)``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from fuzz_cases_artifacts import HEAD_CASES, head_bomb, head_tamper, model_tamper
from fuzz_cases_disk import full_disk
from fuzz_cases_files import (
    SPECIAL_FILES,
    TILE_BOMBS,
    tile_bomb,
    tile_damaged,
    tile_eurosat,
    tile_mode,
    tile_name,
    tile_random,
    tile_special,
)
from fuzz_cases_flags import (
    COMPARE_FLAGS,
    DEMO_FLAGS,
    ENROLL_FLAGS,
    EXPORT_FLAGS,
    INFER_FLAGS,
    TRAIN_FLAGS,
    compare_flags,
    demo_flags,
    enroll_flags,
    export_flags,
    infer_flags,
    pairs,
    train_flags,
)
from fuzz_cases_kill import kill_case
from fuzz_cases_runs import checkpoint_case, run_damaged
from fuzz_cases_scenes import (
    SCENE_BOMBS,
    scene_bomb,
    scene_case,
    scene_damaged,
    scene_expected_classes,
    scene_mode,
)
from fuzz_cases_train import train_data
from fuzz_cases_writers import two_writers
from fuzz_checks import folder_csv
from fuzz_harness import Case
from fuzz_world import World, fresh_copy
from runtime_fixtures import NAMES

Generator = Callable[[World, np.random.Generator, int], Case]


def valid_inputs(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Sanity cases that must succeed (exit 0) with the right result: they keep the checks honest."""
    work = world.scratch("valid")
    kind = seed % 5
    if kind == 0:
        tiles = work / "tiles"
        tiles.mkdir()
        for label in range(4):
            (tiles / f"{NAMES[label]}.png").write_bytes(world.valid_tile(label))
        for path in world.real_tiles[:8]:
            fresh_copy(path, tiles / path.name)
        out = work / "predictions.csv"
        argv = ["--model", str(world.model), str(tiles), "--out", str(out), "--quiet"]
        names = {f"{NAMES[label]}.png" for label in range(4)}
        return Case(
            "valid", seed, "infer", argv, "ok", [folder_csv(out, names, set())], note="tiles", workdir=work
        )
    if kind in (1, 2):
        scene = fresh_copy(world.scene if kind == 1 or not world.real_scenes else world.real_scenes[0],
                           work / "scene.tif")  # fmt: skip
        case = scene_case(world, "valid", seed, scene, "ok", f"scene {scene.name}")
        if kind == 1:
            csv = work / "out" / "map.csv"
            case.checks.append(scene_expected_classes({(0, 0): NAMES[0], (3, 3): NAMES[3]}, csv))
        return case
    if kind == 3:
        argv = [
            "--run",
            str(world.run),
            str(work / "model.onnx"),
            "--no-progress",
            "--parity-images",
            "4",
            "--no-svm",
        ]
        return Case("valid", seed, "export", argv, "ok", note="export the tiny run", workdir=work)
    argv = [str(world.run), "--out", str(work / "report")]
    return Case("valid", seed, "compare", argv, "ok", note="compare the tiny run", workdir=work)


# family -> (generator, number of cases at the fast CI size, what it needs: "", "run", "disk", "eurosat")
FAMILIES: dict[str, tuple[Generator, int, str]] = {
    "valid": (valid_inputs, 5, "run"),
    "tile-random": (tile_random, 20, ""),
    "tile-damaged": (tile_damaged, 50, ""),
    "tile-eurosat": (tile_eurosat, 10, "eurosat"),
    "tile-mode": (tile_mode, 25, ""),
    "tile-name": (tile_name, 15, ""),
    "tile-bomb": (tile_bomb, len(TILE_BOMBS), ""),
    "tile-special": (tile_special, len(SPECIAL_FILES), ""),
    "scene-damaged": (scene_damaged, 24, ""),
    "scene-mode": (scene_mode, 9, ""),
    "scene-bomb": (scene_bomb, len(SCENE_BOMBS), ""),
    "head-tamper": (head_tamper, HEAD_CASES, ""),
    "head-bomb": (head_bomb, 2, ""),
    "model-tamper": (model_tamper, 21, ""),
    "checkpoint": (checkpoint_case, 8, "run"),
    "train-data": (train_data, 2, ""),
    "run-damaged": (run_damaged, 8, "run"),
    "full-disk": (full_disk, 8, "disk"),
    "two-writers": (two_writers, 1, "run"),  # torch-importing processes: the long size runs the rest
    "kill": (kill_case, 1, "run"),
    "flags-train": (train_flags, len(pairs(TRAIN_FLAGS)), "run"),
    "flags-export": (export_flags, len(pairs(EXPORT_FLAGS)), "run"),
    "flags-infer": (infer_flags, len(pairs(INFER_FLAGS)), ""),
    "flags-compare": (compare_flags, len(pairs(COMPARE_FLAGS)), "run"),
    "flags-demo": (demo_flags, len(pairs(DEMO_FLAGS)), ""),
    "flags-enroll": (enroll_flags, len(pairs(ENROLL_FLAGS)), ""),
}


def missing(family: str, world: World) -> str | None:
    """Why ``family`` cannot run with this world (None: it can)."""
    needs = FAMILIES[family][2]
    if needs == "run" and world.run is None:
        return "needs torch (rfmml[train]) for the tiny training run"
    if needs == "disk" and (world.disk is None or world.run is None):
        return "needs a small tmpfs (mount, as root) and the tiny training run"
    if needs == "eurosat" and not world.real_tiles:
        return "EuroSAT not found beside the checkout (shared/data/EuroSAT): no real tiles to damage"
    return None


def make_case(family: str, seed: int, world: World) -> Case:
    """The case (family, seed): the same files and command line every time."""
    generator = FAMILIES[family][0]
    return generator(world, np.random.default_rng([seed, sum(map(ord, family))]), seed)
