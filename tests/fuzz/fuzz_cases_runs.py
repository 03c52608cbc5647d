"""Generators of cases on checkpoints and run folders: malicious / damaged checkpoints through train
--weights/--init/--resume and export --run; run folders damaged by a power loss (torn metrics line),
bit rot (config, split, checkpoint) or a kill (stale temporaries, which the next command in that
folder must remove), through ``rfmml-train --resume`` and ``rfmml-export --run``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from fuzz_bytes import mutate, random_bytes, truncated
from fuzz_checks import PREVIOUS, marker_absent, no_temp_files, previous_kept
from fuzz_harness import Case
from fuzz_world import TINY_TRAIN, World, fresh_copy

from rfmml.runtime.atomic_files import host_token

EXPORT_QUICK = ("--no-progress", "--parity-images", "4", "--no-svm")
CHECKPOINT_KINDS = (
    "export evil",
    "export damaged",
    "train weights evil",
    "train weights tensor",
    "train weights list",
    "train weights junk",
    "train init evil",
    "train resume evil",
)


def checkpoint_case(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A malicious pickle (its unpickling would create a marker file: it must not), a damaged checkpoint
    or a --weights file holding a tensor / list / junk, through train --weights/--init/--resume and
    export --run."""
    import torch

    work = world.scratch("checkpoint")
    kind = CHECKPOINT_KINDS[seed % len(CHECKPOINT_KINDS)]
    run = fresh_copy(world.run, work / "run")
    (run / "eval.json").unlink(missing_ok=True)
    expect = "error"
    if kind == "export damaged":
        how, data = mutate(rng, (run / "best.pt").read_bytes())
        (run / "best.pt").write_bytes(data)
        expect, kind = ("error" if how == "truncated" else "any"), f"export {how} best.pt"
    elif "evil" in kind:
        target = {"export": "best.pt", "init": "best.pt", "resume": "last.pt"}.get(kind.split()[1], "best.pt")
        shutil.copyfile(world.evil, run / target)
    weights = work / "weights.pt"
    if kind == "train weights evil":
        shutil.copyfile(world.evil, weights)
    elif kind == "train weights tensor":
        torch.save(torch.zeros(3), weights)
    elif kind == "train weights list":
        torch.save([1, 2, 3], weights)
    elif kind == "train weights junk":
        weights.write_bytes(random_bytes(rng, 1, 2048))
    argv = _checkpoint_argv(kind, run, work, weights)
    command = "export" if kind.startswith("export") else "train"
    checks = [marker_absent(world.marker), no_temp_files(run), no_temp_files(work)]
    if command == "export":  # --force over a previous pair: a failed export leaves it as it was
        for name in ("model.onnx", "model.npz"):
            (work / name).write_bytes(PREVIOUS)
        checks.append(previous_kept([work / "model.onnx", work / "model.npz"]))
    return Case("checkpoint", seed, command, argv, expect, checks, note=kind, workdir=work)


def _checkpoint_argv(kind: str, run: Path, work: Path, weights: Path) -> list[str]:
    if kind.startswith("export"):
        return ["--run", str(run), str(work / "model.onnx"), "--force", *EXPORT_QUICK]
    if kind == "train resume evil":
        return ["--resume", str(run), "--no-cache"]
    if kind == "train init evil":
        return ["--init", str(run), "--out", str(work / "new"), *TINY_TRAIN]
    return ["--weights", str(weights), "--backbone", "conv4", "--out", str(work / "new"), *TINY_TRAIN]


RUN_DAMAGES = (
    "torn metrics line",
    "stale checkpoint temporaries",
    "stale export temporaries",
    "junk after metrics",
    "config damaged",
    "split damaged",
    "last.pt damaged",
    "metrics damaged",
)


def _dead_pid() -> int:
    """The pid of a process that has exited (a killed exporter's pid)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def stale_temporary(folder: Path, name: str, tag: str) -> Path:
    """The temporary a killed ``tag`` writer leaves for ``name``, in the documented scheme of
    ``rfmml.runtime.atomic_files.temporary_for``: ``.<name>.<tag>.<host>.<pid>-<n>.tmp`` (this host, a
    dead pid)."""
    return folder / f".{name}.{tag}.{host_token()}.{_dead_pid()}-1.tmp"


def _torn(path: Path, rng: np.random.Generator) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    last = lines[-1]
    path.write_bytes(b"".join(lines[:-1]) + last[: int(rng.integers(1, len(last) - 1))])


def _damage(run: Path, out: Path, kind: str, rng: np.random.Generator) -> str:
    """Apply ``kind`` to ``run`` (or the export folder ``out``); returns the expected outcome."""
    if kind == "torn metrics line":
        _torn(run / "metrics.jsonl", rng)
        return "ok"
    if kind == "stale checkpoint temporaries":
        for name in ("last.pt", "best.pt", "metrics.jsonl"):
            stale_temporary(run, name, "rfmml-train").write_bytes(random_bytes(rng, 1, 256))
        return "ok"
    if kind == "stale export temporaries":
        for name in ("model.onnx", "model.npz"):
            stale_temporary(out, name, "rfmml-export").write_bytes(random_bytes(rng, 1, 256))
        return "ok"
    if kind == "junk after metrics":
        with open(run / "metrics.jsonl", "ab") as handle:
            handle.write(random_bytes(rng, 1, 64).replace(b"\n", b" "))
        return "ok"
    target = {"config damaged": "config.json", "split damaged": "split.json", "last.pt damaged": "last.pt"}
    path = run / target.get(kind, "metrics.jsonl")
    data = path.read_bytes()
    path.write_bytes(truncated(rng, data) if rng.random() < 0.3 else mutate(rng, data)[1])
    return "any"


def run_damaged(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A copy of the tiny run, unfinished (eval.json removed) and damaged one way, then resumed (or, for
    export temporaries, exported): a torn last metrics line is dropped (exit 0), stale temporaries are
    removed, any other damage is a one-line error or a clean resume, never a crash."""
    work = world.scratch("run-damaged")
    run = fresh_copy(world.run, work / "run")
    (run / "eval.json").unlink()
    out = work / "export"
    out.mkdir()
    kind = RUN_DAMAGES[seed % len(RUN_DAMAGES)]
    expect = _damage(run, out, kind, rng)
    if kind == "stale export temporaries":
        (run / "eval.json").write_bytes((world.run / "eval.json").read_bytes())
        argv = ["--run", str(run), str(out / "model.onnx"), *EXPORT_QUICK]
        command = "export"
    else:
        argv, command = ["--resume", str(run), "--no-cache", "--no-progress"], "train"
    checks = [no_temp_files(run), no_temp_files(out)]
    return Case("run-damaged", seed, command, argv, expect, checks, note=kind, workdir=work)
