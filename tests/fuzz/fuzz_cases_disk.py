"""Generator of full-disk cases: outputs of rfmml-infer, rfmml-export and rfmml-train written to a small
tmpfs (mounted once per world; the family is skipped where mounting is not allowed) that is filled to
leave a random number of free bytes. Expected: success, or one line ("No space left on device ...",
exit 2) with the previous outputs intact and no temporary left."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from fuzz_cases_runs import EXPORT_QUICK
from fuzz_checks import PREVIOUS, error_names_file_in, no_temp_files, previous_kept
from fuzz_harness import Case
from fuzz_world import TINY_TRAIN, World

KINDS = ("infer folder", "infer scene", "export --force", "train")


def _fill(disk: Path, free: int) -> None:
    """Fill ``disk`` with one file so that about ``free`` bytes stay available (tmpfs counts pages)."""
    stat = os.statvfs(disk)
    available = stat.f_bavail * stat.f_frsize
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, available - free))


def full_disk(world: World, rng: np.random.Generator, seed: int) -> Case:
    """One command writing to the small disk with 0..600 KiB free, over previous outputs."""
    disk = world.disk
    assert disk is not None
    for entry in disk.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    work = world.scratch("full-disk")
    kind = KINDS[seed % len(KINDS)]
    free = int(rng.integers(0, 600 << 10)) if seed >= len(KINDS) else 0
    argv, command, previous = _command(world, work, disk, kind)
    for path in previous:
        path.write_bytes(PREVIOUS)
    _fill(disk, free)
    checks = [previous_kept(previous), no_temp_files(disk), error_names_file_in(disk)]
    if kind == "train":
        checks.append(no_temp_files(disk / "run"))
    return Case("full-disk", seed, command, argv, "any", checks, note=f"{kind}, {free >> 10} KiB free",
                workdir=work)  # fmt: skip


def _command(world: World, work: Path, disk: Path, kind: str) -> tuple[list[str], str, list[Path]]:
    if kind == "infer folder":
        tiles = work / "tiles"
        tiles.mkdir()
        for label in range(4):
            (tiles / f"{label}.png").write_bytes(world.valid_tile(label))
        out = disk / "predictions.csv"
        return ["--model", str(world.model), str(tiles), "--out", str(out), "--quiet"], "infer", [out]
    if kind == "infer scene":
        outputs = [disk / "map.tif", disk / "map.csv", disk / "look.png"]
        argv = ["--model", str(world.model), str(world.scene), "--out", str(outputs[0]), "--csv",
                str(outputs[1]), "--quicklook", str(outputs[2]), "--quiet"]  # fmt: skip
        return argv, "infer", outputs
    if kind == "export --force":
        outputs = [disk / "model.onnx", disk / "model.npz"]
        return ["--run", str(world.run), str(outputs[0]), "--force", *EXPORT_QUICK], "export", outputs
    return ["--out", str(disk / "run"), *TINY_TRAIN], "train", []
