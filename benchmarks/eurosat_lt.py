"""The EuroSAT-LT comparison (issue 5): every method on the same imbalanced splits, then a report.

Protocol (ANCHORS.md, reproduced by rfmml-train's split flags): per class 500 test / 100 val / 300 train
images, 4 minority classes drawn with the seed keep s = 5 or 10 training images; resnet18 from scratch
at 64 px (no ImageNet weights are reachable here). Budgets as the anchors: cross-entropy 25 epochs,
batch 64, Adam 1e-3 (constant); protonet 1,500 episodes at 1e-3; rfmml RET 1,500 episodes at 1e-3 then
ACF 300 at 1e-4. "warm" = rfmml --init from a plain run trained on the 6 majority classes only.

Every run is a real ``rfmml-train`` command (printed, and listed in RESULTS.md); a run whose eval.json
exists is skipped, so the script can be stopped and restarted. Then ``rfmml-compare`` per shot count.

    python benchmarks/eurosat_lt.py --out benchmarks/out/eurosat_lt --seeds 0 1 2 --shots 5 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "EuroSAT"
BIN = Path(sys.executable).parent
COMMON = [
    "--backbone",
    "resnet18",
    "--no-pretrained",
    "--image-size",
    "64",
    "--test-per-class",
    "500",
    "--val-per-class",
    "100",
    "--train-per-class",
    "300",
    "--minority-classes",
    "4",
]
EPISODIC = ["--queries", "5", "--val-every", "100", "--log-every", "50"]
CE = ["--epochs", "25", "--ce-batch", "64", "--lr", "1e-3", "--lr-step", "1000"]
METHOD_FLAGS = {
    "plain": CE,
    "reweight": CE,
    "resample": CE,
    "logit-adjust": CE,
    "protonet": EPISODIC + ["--ret-episodes", "1500", "--ret-lr", "1e-3"],
    "rfmml": EPISODIC
    + ["--ret-episodes", "1500", "--ret-lr", "1e-3", "--acf-episodes", "300", "--acf-lr", "1e-4"],
    "rfmml-no-ret": EPISODIC + ["--ret-episodes", "0", "--acf-episodes", "300", "--acf-lr", "1e-4"],
    "rfmml-no-acf": EPISODIC + ["--ret-episodes", "1500", "--ret-lr", "1e-3", "--acf-episodes", "0"],
}
ALL_METHODS = (*METHOD_FLAGS, "warm")


def run(command: list[str], log: Path) -> float:
    print("$ " + " ".join(command[1:] if command[0].endswith("python") else command), flush=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}); see {log}")
    return time.perf_counter() - start


def majority_only_split(split_path: Path, out: Path) -> Path:
    """A copy of a split that keeps only the majority classes (for the warm-up's plain run)."""
    split = json.loads(split_path.read_text())
    keep = split["majority"]
    reduced = {
        **split,
        "classes": keep,
        "minority": [],
        **{part: {c: split[part][c] for c in keep} for part in ("train", "val", "test")},
    }
    out.write_text(json.dumps(reduced, indent=1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/eurosat_lt"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--methods", nargs="+", default=list(ALL_METHODS), choices=ALL_METHODS)
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"EuroSAT not found at {args.data}: pass --data", file=sys.stderr)
        return 2
    train = str(BIN / "rfmml-train")
    commands: list[str] = []
    timings: dict[str, float] = {}
    for shots in args.shots:
        for seed in args.seeds:
            base = args.out / f"s{shots}" / f"seed{seed}"
            base.mkdir(parents=True, exist_ok=True)
            for method in args.methods:
                run_dir = base / method
                if (run_dir / "eval.json").exists():
                    continue
                if method == "warm":
                    warm = base / "plain-majority"
                    if not (warm / "eval.json").exists():
                        split = base / "plain" / "split.json"
                        if not split.exists():
                            raise SystemExit(f"warm needs {split}: run the plain method first")
                        reduced = majority_only_split(split, base / "majority_split.json")
                        cmd = [
                            train,
                            "--data",
                            str(args.data),
                            "--split",
                            str(reduced),
                            "--method",
                            "plain",
                            *COMMON[:6],
                            *CE,
                            "--seed",
                            str(seed),
                            "--out",
                            str(warm),
                            "--no-progress",
                        ]
                        commands.append(" ".join(cmd[1:]))
                        timings[str(warm)] = run(cmd, base / "plain-majority.log")
                    cmd = [
                        train,
                        "--data",
                        str(args.data),
                        "--method",
                        "rfmml",
                        "--init",
                        str(warm),
                        *COMMON,
                        "--minority-shots",
                        str(shots),
                        *METHOD_FLAGS["rfmml"],
                        "--seed",
                        str(seed),
                        "--out",
                        str(run_dir),
                        "--no-progress",
                    ]
                else:
                    cmd = [
                        train,
                        "--data",
                        str(args.data),
                        "--method",
                        method,
                        *COMMON,
                        "--minority-shots",
                        str(shots),
                        *METHOD_FLAGS[method],
                        "--seed",
                        str(seed),
                        "--out",
                        str(run_dir),
                        "--no-progress",
                    ]
                commands.append(" ".join(cmd[1:]))
                timings[str(run_dir)] = run(cmd, base / f"{method}.log")
    (args.out / "commands.txt").write_text("\n".join(f"rfmml-train {c}" for c in commands) + "\n")
    (args.out / "timings.json").write_text(json.dumps(timings, indent=1))
    compare = str(BIN / "rfmml-compare")
    for shots in args.shots:
        runs = sorted(
            str(p.parent)
            for p in (args.out / f"s{shots}").glob("seed*/*/eval.json")
            if p.parent.name != "plain-majority"
        )
        subprocess.run([compare, *runs, "--out", str(args.out / f"report_s{shots}")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
