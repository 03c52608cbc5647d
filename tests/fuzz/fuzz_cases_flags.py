"""Bad flags for the six commands: negative / huge / nan / inf numbers, 20-digit integers, missing and
unwritable paths, unknown choices, broken run folders. Every case must be refused with one line (exit
2) before any work starts; a handful are documented as accepted with a warning (noted per case).

Case ``seed`` picks the (flag, value) pair ``seed % n`` of the command's table (the issue's reported
values first); the generator draws the contents of junk files. The train cases carry the tiny budget,
so an accepted bad value costs seconds, not minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fuzz_bytes import random_bytes
from fuzz_checks import (
    PREVIOUS,
    error_names,
    files_unchanged,
    no_temp_files,
    previous_kept,
    warned_if_accepted,
)
from fuzz_harness import Case
from fuzz_world import TINY_TRAIN, World, fresh_copy

HUGE = "99999999999999999999"  # 20 digits: beyond int64
FLOATS = ("nan", "inf", "-inf", "1e400", "-1", "abc", "")

# (flag, candidate bad values, extra flags). The values come first in every table.
TRAIN_FLAGS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("--seed", ("-1", HUGE, "nan", "abc", "1.5", "-" + HUGE), ()),
    ("--ret-lr", ("-1", "nan", "inf", "1e400", "-inf"), ()),
    ("--acf-lr", ("inf", "nan", "-1"), ()),
    ("--la-tau", ("nan", "inf", "-inf"), ("--method", "logit-adjust", "--epochs", "2")),
    ("--image-size", ("100000", "0", "-5", HUGE), ()),
    ("--ret-episodes", ("-1", HUGE), ()),
    ("--acf-episodes", ("-1", HUGE), ()),
    ("--queries", ("0", "-1", HUGE), ()),
    ("--val-every", ("0", "-1"), ()),
    ("--log-every", ("0", "-1"), ()),
    ("--train-frac", ("2", "0", "nan", "-0.5", "inf"), ()),
    ("--n-max", ("0", "-1", HUGE), ()),
    ("--workers", ("-1", HUGE), ()),
    ("--threads", ("-1", HUGE), ()),
    ("--batch-size", ("0", "-1", HUGE), ()),
    ("--svm-c", ("nan", "-1", "0", "inf"), ()),
    ("--minority", ("NoSuchClass",), ()),
    ("--minority-classes", ("-1", "100", HUGE), ()),
    ("--minority-shots", ("-1", HUGE), ()),
    ("--epochs", ("-1", HUGE), ("--method", "plain")),
    ("--lr", ("nan", "-1", "inf"), ("--method", "plain", "--epochs", "2")),
    ("--ce-batch", ("0", "-1"), ("--method", "plain", "--epochs", "2")),
    ("--method", ("bogus", ""), ()),
    ("--backbone", ("bogus", "timm:no_such_model_xyz", ""), ()),
    ("--device", ("bogus", "cuda:99"), ()),
    ("--distance", ("cosine",), ()),
    ("--data", ("@missing", "@file", "@empty"), ()),
    ("--out", ("@finished", "@under-file", ""), ()),
    ("--split", ("@missing", "@junk", "@json-list", "@json-classes"), ()),
    ("--weights", ("@missing", "@junk"), ("--backbone", "conv4")),
    ("--init", ("@missing", "@empty"), ()),
    ("--resume", ("@missing", "@empty", "@seed-text", "@seed-float", "@config-truncated"), ()),
]

EXPORT_FLAGS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("--svm-c", ("nan", "inf", "-1", "0"), ()),
    ("--run", ("@no-backbone", "@missing", "@file", "@empty", "@config-truncated", "@no-split"), ()),
    ("--opset", ("99", "17", HUGE, "-1"), ()),
    ("--tolerance", ("nan", "-1", "abc"), ()),
    ("--min-agreement", ("2", "-0.1", "nan"), ("--int8",)),
    ("--parity-images", ("0", "-1", HUGE), ()),
    ("--calibration-images", ("0", HUGE), ("--int8",)),
    ("--batch-size", ("0", HUGE), ()),
    ("--checkpoint", ("missing.pt", "../config.json", "", "config.json"), ()),
    ("--data", ("@missing", "@file"), ()),
    ("--svm-class-weight", ("bogus",), ()),
    ("OUTPUT", ("@exists", "@under-file", "@missing-folder", "@directory"), ()),
]

INFER_FLAGS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("--batch", ("100000000", "0", "-1", HUGE), ()),
    ("--tile", ("100000", "0", "-1", HUGE), ("@scene",)),
    ("--threads", ("400", HUGE), ()),
    ("--threads", ("-1",), ()),
    ("--stride", ("0", "-1", HUGE), ("@scene",)),
    ("--top-k", ("0", "-1", HUGE), ()),
    ("--workers", ("-1",), ()),
    ("--workers", ("400", HUGE), ()),
    ("--bands", ("0,1,2", "1,2", "a,b,c", "1,2,99", "", "1,2,3,4"), ("@scene",)),
    ("--quicklook-size", ("0", "-1", HUGE), ("@scene",)),
    ("--providers", ("bogus", "", "cpu,bogus"), ()),
    ("--head", ("@missing", "@junk"), ()),
    ("--model", ("@missing", "@directory", "@junk"), ()),
    ("INPUT", ("@missing", "@junk-scene", "@empty-file"), ()),
    ("--out", ("@missing-folder", "@under-file", "@scene-jpg"), ("@scene",)),
    ("--csv", ("@missing-folder",), ("@scene",)),
    ("--tile", ("32",), ()),  # a scene-only flag on a folder
]

COMPARE_FLAGS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("RUNS", ("@missing", "@empty", "@junk-eval", "@config-truncated", "@none"), ()),
    ("--out", ("@under-file",), ()),
    ("--group-by", ("bogus", ""), ()),
    ("--label", ("bogus",), ()),
]

DEMO_FLAGS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("--seed", ("-1", HUGE, "nan", "abc", "1.5"), ()),
    ("--out", ("@under-file",), ()),
    ("--bogus", ("1",), ()),
]


# rfmml-enroll on the world's colour pair (classes red, green, blue, yellow): "@..." values are made
# by enroll_flags. The output must never appear, the input head never change.
ENROLL_FLAGS: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("--threads", ("-1",), ()),
    ("--threads", ("400", HUGE), ()),
    ("--providers", ("bogus", "", "cpu,bogus"), ()),
    ("--model", ("@missing", "@directory", "@junk"), ()),
    ("--head", ("@missing", "@junk"), ()),
    ("--add", ("@duplicate", "@missing", "@empty", "@unreadable-tiles"), ()),
    ("--replace", ("@unknown-class",), ()),
    ("--remove", ("@unknown-class", "@every-class"), ()),
    ("--out", ("@under-file", "@the-head", "@the-model"), ()),
]

CAPPED = ("--threads", "--workers")  # rfmml-infer: a value above the CPU count is capped with a warning


def _expect(flag: str, value: str) -> tuple[str, list]:
    """A 20-digit value is refused, or (a documented choice) capped with a warning naming the flag."""
    return ("any", [warned_if_accepted(flag)]) if value == HUGE else ("error", [])


def pairs(table) -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (flag, value, extra flags) of a table, in order: seed k is pair k % len (the fast size runs
    each once; longer runs repeat them with other random file contents)."""
    return [(flag, value, extra) for flag, values, extra in table for value in values]


def _pick(table, _rng: np.random.Generator, seed: int) -> tuple[str, str, tuple[str, ...]]:
    every = pairs(table)
    return every[seed % len(every)]


def _file(work: Path, rng: np.random.Generator, name: str = "junk.bin") -> Path:
    path = work / name
    path.write_bytes(random_bytes(rng, 1, 512))
    return path


def _broken_run(world: World, work: Path, how: str) -> Path:
    """A copy of the tiny run with one defect (``how``: seed-text, seed-float, config-truncated,
    no-backbone, no-split)."""
    run = fresh_copy(world.run, work / "run")
    (run / "eval.json").unlink(missing_ok=True)
    config_path = run / "config.json"
    config = json.loads(config_path.read_text())
    if how == "seed-text":
        config["seed"] = "abc"
    elif how == "seed-float":
        config["seed"] = 1.5
    elif how == "no-backbone":
        config.pop("backbone", None)
    elif how == "no-split":
        (run / "split.json").unlink()
    text = json.dumps(config)
    config_path.write_text(text[: len(text) // 2] if how == "config-truncated" else text)
    return run


def _path_value(world: World, work: Path, rng: np.random.Generator, value: str) -> str:
    """Turn an ``@name`` placeholder into a real (bad) path in ``work``."""
    how = value[1:]
    if how == "missing":
        return str(work / "does-not-exist")
    if how in ("file", "junk"):
        return str(_file(work, rng))
    if how in ("empty", "directory"):
        (work / "empty").mkdir(exist_ok=True)
        return str(work / "empty")
    if how == "under-file":
        return str(_file(work, rng, "a-file") / "below")
    if how == "missing-folder":
        return str(work / "no-such-folder" / "out.csv")
    if how == "json-list":
        (work / "split.json").write_text("[1, 2, 3]")
        return str(work / "split.json")
    if how == "json-classes":
        (work / "split.json").write_text(json.dumps({"classes": ["x"], "train": {"x": ["nope.png"]}}))
        return str(work / "split.json")
    if how == "finished":
        return str(fresh_copy(world.run, work / "finished"))
    if how in ("seed-text", "seed-float", "config-truncated", "no-backbone", "no-split"):
        return str(_broken_run(world, work, how))
    raise ValueError(f"unknown placeholder {value}")


def train_flags(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("flags-train")
    flag, value, extra = _pick(TRAIN_FLAGS, rng, seed)
    value = _path_value(world, work, rng, value) if value.startswith("@") else value
    if flag == "--resume":
        argv = [flag, value, "--no-cache"]
    else:
        argv = ["--out", str(work / "run"), *TINY_TRAIN, *extra, flag, value]
    expect, checks = _expect(flag, value)
    checks += [error_names(flag, value), no_temp_files(work)]
    if value.endswith("/finished"):  # a finished run is never overwritten, nor touched
        checks.append(
            files_unchanged([Path(value) / name for name in ("eval.json", "best.pt", "metrics.jsonl")])
        )
    return Case("flags-train", seed, "train", argv, expect, checks, limit_s=30, note=f"{flag} {value!r}",
                workdir=work)  # fmt: skip


def export_flags(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("flags-export")
    flag, value, extra = _pick(EXPORT_FLAGS, rng, seed)
    output = work / "model.onnx"
    run = str(world.run)
    checks = [no_temp_files(work)]
    fixed = ["--no-progress", "--parity-images", "4", "--no-svm", *extra]
    if flag == "OUTPUT":
        output = _export_output(work, rng, value)
        if value == "@exists":
            checks.append(previous_kept([output, output.with_suffix(".npz")]))
        argv, value = ["--run", run, str(output), *fixed], str(output)
    elif flag == "--run":
        value = _path_value(world, work, rng, value)
        argv = ["--run", value, str(output), *fixed]
    else:
        value = _path_value(world, work, rng, value) if value.startswith("@") else value
        argv = ["--run", run, str(output), *fixed, flag, value]
    expect, capped = _expect(flag, value)
    checks += [*capped, error_names(flag, value)]
    return Case("flags-export", seed, "export", argv, expect, checks, note=f"{flag} {value!r}", workdir=work)


def _export_output(work: Path, rng: np.random.Generator, value: str) -> Path:
    if value == "@exists":
        for name in ("model.onnx", "model.npz"):
            (work / name).write_bytes(PREVIOUS)
        return work / "model.onnx"
    if value == "@directory":
        (work / "model.onnx").mkdir()
        return work / "model.onnx"
    return Path(_path_value(None, work, rng, value))  # type: ignore[arg-type]


def infer_flags(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("flags-infer")
    flag, value, extra = _pick(INFER_FLAGS, rng, seed)
    scene = "@scene" in extra
    tiles = work / "tiles"
    tiles.mkdir()
    (tiles / "valid.png").write_bytes(world.valid_tile(seed % 4))
    target = fresh_copy(world.scene, work / "scene.tif") if scene else tiles
    out = work / ("map.tif" if scene else "predictions.csv")
    model = str(world.model)
    expect, checks = _expect(flag, value)
    if flag in CAPPED and value not in ("-1", "0"):  # documented: capped to the CPUs with a warning
        expect, checks = ("any" if value == HUGE else "ok"), [warned_if_accepted(flag)]
    checks.append(no_temp_files(work))
    argv_tail: list[str] = []
    if flag == "--model":
        model = value = _path_value(world, work, rng, value)
    elif flag == "INPUT":
        target = _infer_input(work, rng, value)
        value = str(target)
    elif flag == "--out":
        if value == "@missing-folder":
            out = work / "no-such-folder" / out.name
        else:
            out = work / "map.jpg" if value == "@scene-jpg" else Path(_path_value(world, work, rng, value))
        value = str(out)
    else:
        value = _path_value(world, work, rng, value) if value.startswith("@") else value
        argv_tail = [flag, value]
    checks.append(error_names(flag, value))
    argv = ["--model", model, str(target), "--out", str(out), "--quiet", *argv_tail]
    return Case("flags-infer", seed, "infer", argv, expect, checks, note=f"{flag} {value!r}", workdir=work)


def _infer_input(work: Path, rng: np.random.Generator, value: str) -> Path:
    if value == "@missing":
        return work / "does-not-exist"
    if value == "@empty-file":
        (work / "empty.tif").write_bytes(b"")
        return work / "empty.tif"
    return _file(work, rng, "scene.tif")


def compare_flags(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("flags-compare")
    flag, value, _extra = _pick(COMPARE_FLAGS, rng, seed)
    out = work / "report"
    runs = [str(world.run)]
    if flag == "RUNS":
        runs = _compare_runs(world, work, rng, value)
        value = runs[0] if runs else ""
    elif flag == "--out":
        out = Path(_path_value(world, work, rng, value))
        value = str(out)
    argv = [*runs, "--out", str(out)]
    if flag.startswith("--") and flag != "--out":
        argv += [flag, value]
    checks = [error_names(flag, value), no_temp_files(work)]
    return Case(
        "flags-compare", seed, "compare", argv, "error", checks, note=f"{flag} {value!r}", workdir=work
    )


def _compare_runs(world: World, work: Path, rng: np.random.Generator, value: str) -> list[str]:
    if value == "@none":
        return []
    if value == "@junk-eval":
        run = fresh_copy(world.run, work / "run")
        (run / "eval.json").write_bytes(random_bytes(rng, 1, 256))
        return [str(run)]
    if value == "@config-truncated":
        run = fresh_copy(world.run, work / "run")
        text = (run / "config.json").read_text()
        (run / "config.json").write_text(text[: len(text) // 2])
        return [str(run)]
    return [_path_value(world, work, rng, value)]


def demo_flags(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("flags-demo")
    flag, value, _extra = _pick(DEMO_FLAGS, rng, seed)
    value = _path_value(world, work, rng, value) if value.startswith("@") else value
    argv = ["--out", str(work / "demo"), flag, value] if flag != "--out" else ["--out", value]
    checks = [error_names(flag, value), no_temp_files(work)]
    return Case("flags-demo", seed, "demo", argv, "error", checks, limit_s=20,
                note=f"{flag} {value!r}", workdir=work)  # fmt: skip


def enroll_flags(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("flags-enroll")
    flag, value, _extra = _pick(ENROLL_FLAGS, rng, seed)
    tiles = work / "tiles"
    tiles.mkdir()
    (tiles / "valid.png").write_bytes(world.valid_tile(seed % 4))
    model, out = Path(world.model), work / "new.npz"
    head = model.with_suffix(".npz")
    actions = ["--add", "purple", str(tiles)]
    expect, checks = _expect(flag, value)
    if flag in CAPPED and value != "-1":  # documented: capped to the CPUs with a warning
        expect, checks = ("any" if value == HUGE else "ok"), [warned_if_accepted(flag)]
    checks += [no_temp_files(work), files_unchanged([model, head])]
    tail: list[str] = []
    if flag in ("--add", "--replace", "--remove"):
        actions, value = _enroll_actions(world, work, rng, flag, value, tiles)
    elif flag == "--out":
        out = {"@the-head": head, "@the-model": model}.get(value) or Path(
            _path_value(world, work, rng, value)
        )
        value = str(out)
    elif flag == "--model":
        value = _path_value(world, work, rng, value)
        model = Path(value)
    else:
        value = _path_value(world, work, rng, value) if value.startswith("@") else value
        tail = [flag, value]
    checks.append(error_names(flag, value))
    argv = ["--model", str(model), *actions, "--out", str(out), *tail]
    return Case("flags-enroll", seed, "enroll", argv, expect, checks, note=f"{flag} {value!r}", workdir=work)


def _enroll_actions(
    world: World, work: Path, rng: np.random.Generator, flag: str, value: str, tiles: Path
) -> tuple[list[str], str]:
    """The --add/--replace/--remove arguments of a bad enrolment, and the value the error must name."""
    names = ("red", "green", "blue", "yellow")  # the classes of the world's colour pair
    if value == "@duplicate":
        return ["--add", names[0], str(tiles)], names[0]
    if value == "@unknown-class":
        return ([flag, "no-such-class", str(tiles)] if flag == "--replace" else [flag, "no-such-class"]), (
            "no-such-class"
        )
    if value == "@every-class":
        return [part for name in names for part in ("--remove", name)], names[0]
    if value == "@unreadable-tiles":
        bad = work / "unreadable"
        bad.mkdir()
        for k in range(3):
            _file(bad, rng, f"tile{k}.png")
        return ["--add", "purple", str(bad)], str(bad)
    folder = _path_value(world, work, rng, value)  # @missing, @empty
    return ["--add", "purple", folder], folder
