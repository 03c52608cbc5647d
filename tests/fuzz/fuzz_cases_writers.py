"""Generator of two-writer cases: two processes of the same command started at once on the same
outputs. rfmml-train: the run folder is owned by one process (the other gets one line, exit 2: never
two runs mixed in one folder); rfmml-infer: each output is complete and from one run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fuzz_checks import PREVIOUS, outputs_complete
from fuzz_harness import Case, Outcome
from fuzz_two_writers import SEPARATOR
from fuzz_world import TINY_TRAIN, World


def _codes(outcome: Outcome) -> list[int]:
    lines = [line for line in outcome.stdout.splitlines() if line.startswith('{"codes"')]
    return json.loads(lines[-1])["codes"] if lines else []


def one_owner(run: Path):
    """Two trainings on one --out: exactly one finishes (0), the other is refused (2)."""

    def check(outcome: Outcome) -> tuple[str, str] | None:
        codes = sorted(_codes(outcome))
        if codes == [0, 0]:
            return ("wrong", "both trainings exited 0 in one run folder (mixed run)")
        if codes != [0, 2]:
            return ("wrong", f"exit codes {codes}, expected one 0 and one 2")
        lines = (run / "metrics.jsonl").read_text().splitlines()
        if len(lines) != len(set(lines)):
            return ("lost", "metrics.jsonl holds repeated records (two writers)")
        return None

    return check


def two_writers(world: World, rng: np.random.Generator, seed: int) -> Case:
    """Seed odd: two rfmml-train runs (seeds s and s+1) into one --out; even: two rfmml-infer runs of
    the quadrant scene into the same map, CSV and quick-look (the fast size runs seed 0 only: the
    trainer's own tests hold the two-trainings case; the long size runs both)."""
    work = world.scratch("two-writers")
    if seed % 2 == 1:
        run = work / "run"
        first = ["--out", str(run), *TINY_TRAIN, "--seed", str(seed)]
        second = ["--out", str(run), *TINY_TRAIN, "--seed", str(seed + 1)]
        argv = ["train", *first, SEPARATOR, *second]
        checks = [one_owner(run)]
        note = "two trainings, one --out"
    else:
        out = work / "out"
        out.mkdir()
        outputs = [out / "map.tif", out / "map.csv", out / "look.png"]
        for path in outputs:
            path.write_bytes(PREVIOUS)
        one = ["--model", str(world.model), str(world.scene), "--out", str(outputs[0]), "--csv",
               str(outputs[1]), "--quicklook", str(outputs[2]), "--quiet"]  # fmt: skip
        argv = ["infer", *one, SEPARATOR, *one]
        checks = [outputs_complete(outputs[1], outputs[0])]
        note = "two inferences, same outputs"
    return Case("two-writers", seed, "two-writers", argv, "ok", checks, memory=True, limit_s=120, note=note,
                rss_budget_mib=float("inf"), workdir=work)  # fmt: skip
