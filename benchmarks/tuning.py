"""Tuning regimes on EuroSAT-LT (issue 10): speed of every regime and accuracy in --tune head.

Every measurement is a real ``rfmml-train`` command on the EuroSAT-LT split (ANCHORS.md: per class
500 test / 100 val / 300 train, 4 minority classes with 5 training images, seed 0), with the default
backbone (efficientnet_lite0, ImageNet weights from the packaged file). Speeds come from the runs'
own metrics.jsonl: episodes/s between the first and the last episode record of a phase (validation
is outside that window); feature extraction img/s from the run's "computed train features" line.

    python benchmarks/tuning.py speed  --out benchmarks/out/tuning   # last/all at 64 and 128 px
    python benchmarks/tuning.py head   --out benchmarks/out/tuning   # rfmml, frozen, logit-adjust

``head`` runs the default budget (80,000 RET + 2,000 ACF episodes; logit-adjust 100 epochs) on
cached features; the first run computes the features (minutes), later runs reuse them. A run whose
eval.json exists is not run again.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "EuroSAT"
BIN = Path(sys.executable).parent
PROTOCOL = ["--test-per-class", "500", "--val-per-class", "100", "--train-per-class", "300"]
PROTOCOL += ["--minority-classes", "4", "--minority-shots", "5", "--seed", "0", "--no-progress"]
# Speed runs: the same episodes (4 minority classes with 5 images fix N_max = 5) on a smaller split,
# so the final embedding of every image does not dominate the run.
SPEED_PROTOCOL = ["--test-per-class", "5", "--val-per-class", "5", "--train-per-class", "30"]
SPEED_PROTOCOL += ["--minority-classes", "4", "--minority-shots", "5", "--seed", "0", "--no-progress"]
SPEED_EPISODES = 30
# every run names its --method: the default (rfmml-plus since issue 11) would change what "rfmml" measured
HEAD_RUNS = {
    "rfmml": ["--method", "rfmml"],
    "frozen": ["--method", "frozen"],
    "logit-adjust": ["--method", "logit-adjust"],
}


def train(out: Path, flags: list[str], cache: Path, protocol: list[str] = PROTOCOL) -> tuple[float, str]:
    """Run rfmml-train into ``out`` (unless its eval.json exists); (wall seconds, its output)."""
    if (out / "eval.json").exists():
        log = out.with_suffix(".log")
        return float("nan"), log.read_text() if log.exists() else ""
    command = [str(BIN / "rfmml-train"), "--data", str(DATA), *protocol, *flags]
    command += ["--cache-dir", str(cache), "--out", str(out)]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    out.with_suffix(".log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    return seconds, done.stdout + done.stderr


def episodes_per_second(run: Path) -> dict[str, float]:
    """Per phase: episodes/s between its first and last episode records (metrics.jsonl)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = {}
    for phase in dict.fromkeys(r["phase"] for r in rows if r.get("kind") == "episode"):
        records = [r for r in rows if r.get("kind") == "episode" and r["phase"] == phase]
        if len(records) >= 2:
            first, last = records[0], records[-1]
            rates[phase] = (last["episode"] - first["episode"]) / max(
                last["seconds"] - first["seconds"], 1e-9
            )
    return rates


def speed(out: Path, cache: Path) -> list[dict]:
    """--tune last and all at 64 and 128 px: RET episodes/s (no validation inside the window)."""
    rows = []
    for tune in ("last", "all"):
        for size in (64, 128):
            run = out / f"speed-{tune}-{size}"
            flags = ["--method", "rfmml", "--tune", tune, "--image-size", str(size)]
            flags += ["--ret-episodes", str(SPEED_EPISODES)]
            flags += ["--acf-episodes", "0", "--log-every", "5", "--val-every", str(SPEED_EPISODES)]
            flags += ["--svm-c", "1"]
            train(run, flags, cache, SPEED_PROTOCOL)
            rows.append({"tune": tune, "image_size": size, **episodes_per_second(run)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def head(out: Path, cache: Path) -> list[dict]:
    """The default regime (--tune head) at its default budget: wall time, speeds and accuracy."""
    rows = []
    for name, flags in HEAD_RUNS.items():
        run = out / f"head-{name}"
        seconds, log = train(run, flags, cache)
        found = re.search(r"computed train features: (\d+) images x (\d+) view\(s\), (\d+) img/s", log)
        result = json.loads((run / "eval.json").read_text())
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        row = {
            "method": name,
            "wall_s": round(seconds, 1),
            "training_s": metrics[-1]["seconds"] if metrics else 0.0,
            "extraction_img_s": int(found.group(3)) if found else None,
            "episodes_per_s": episodes_per_second(run),
        }
        for kind in ("proto", "svm", "linear"):
            if kind in result:
                row[kind] = [round(100 * result[kind][k], 1) for k in ("majority", "minority", "overall")]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("speed", "head"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/tuning"))
    parser.add_argument("--cache", type=Path, default=None, help="feature/image cache (default OUT/cache)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache or args.out / "cache"
    rows = speed(args.out, cache) if args.what == "speed" else head(args.out, cache)
    (args.out / f"{args.what}.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
