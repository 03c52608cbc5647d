"""Generator of kill -9 cases: rfmml-infer (scene), rfmml-train and rfmml-export (--force) killed at a
random moment, then run again (train: ``--resume``). After the kill every output is either the previous
one or complete; the rerun succeeds and leaves no temporary behind. The fast size runs the rfmml-infer
case (the trainer's and exporter's own tests kill those); the long size runs all three."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fuzz_cases_runs import EXPORT_QUICK
from fuzz_checks import PREVIOUS, no_temp_files, outputs_complete
from fuzz_harness import Case, Outcome
from fuzz_world import TINY_TRAIN, World

KILL_KINDS = ("infer scene", "train", "export --force")


def _report(outcome: Outcome) -> dict:
    lines = [line for line in outcome.stdout.splitlines() if line.startswith('{"killed"')]
    return json.loads(lines[-1]) if lines else {}


def again_succeeded(outcome: Outcome) -> tuple[str, str] | None:
    report = _report(outcome)
    if report.get("again") != 0:
        return (
            "wrong",
            f"the run after the kill exited {report.get('again')} (killed: {report.get('killed')})",
        )
    return None


def pair_complete(model: Path) -> object:
    """model.onnx and model.npz: a complete pair that the runtime loads (not the previous bytes)."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        from rfmml.runtime.artifact import load_head, sha256_file

        if outcome.code != 0 or _report(outcome).get("again") != 0:
            return None
        head = load_head(model.with_suffix(".npz"))
        if head.onnx_sha256 != sha256_file(model):
            return ("lost", "model.onnx and model.npz do not belong together after the kill and the rerun")
        return None

    return check


def kill_case(world: World, rng: np.random.Generator, seed: int) -> Case:
    work = world.scratch("kill")
    kind = KILL_KINDS[seed % len(KILL_KINDS)]
    delay = float(rng.uniform(0.3, {"infer scene": 1.5, "export --force": 6.0, "train": 6.0}[kind]))
    out = work / "out"
    out.mkdir()
    checks = [again_succeeded, no_temp_files(out)]
    if kind == "infer scene":
        outputs = [out / "map.tif", out / "map.csv", out / "look.png"]
        for path in outputs:
            path.write_bytes(PREVIOUS)
        scene = world.real_scenes[0] if world.real_scenes else world.scene
        args = ["--model", str(world.model), str(scene), "--out", str(outputs[0]), "--csv", str(outputs[1]),
                "--quicklook", str(outputs[2]), "--quiet"]  # fmt: skip
        checks.append(outputs_complete(outputs[1], outputs[0]))
        command = "infer"
    elif kind == "export --force":
        for name in ("model.onnx", "model.npz"):
            (out / name).write_bytes(PREVIOUS)
        args = ["--run", str(world.run), str(out / "model.onnx"), "--force", *EXPORT_QUICK]
        checks.append(pair_complete(out / "model.onnx"))
        command = "export"
    else:
        args = ["--out", str(out / "run"), *TINY_TRAIN]
        checks.append(no_temp_files(out / "run"))
        command = "train"
    uses_torch = command != "infer"
    return Case("kill", seed, "kill", [command, f"{delay:.3f}", *args], "ok", checks, memory=True,
                limit_s=180, note=f"{kind}, SIGKILL after {delay:.2f} s", rss_budget_mib=float("inf"),
                workdir=work, address_limit=(6 << 30) if uses_torch else None)  # fmt: skip
