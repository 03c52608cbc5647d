"""rfmml-train under torchrun on the CPU (issue 13): 1 vs 2 gloo processes, episodes/s and the cost of
the gradient all-reduce per episode.

Every measurement is a real ``rfmml-train`` run, launched by ``python -m torch.distributed.run
--nproc-per-node N`` with this file as the script: the worker wraps ``World.average_gradients`` with
a timer (the time a rank spends in the all-reduce, waiting for the other rank included) and then runs
rfmml-train's own ``main``. At the first step, before the timed window, the wrapper also times 100
back-to-back averages of the same gradient shapes: the communication alone ("pure"), without the
wait for a rank whose step is slower. Episodes/s come from the run's metrics.jsonl: global episodes
between the first and the last episode record of the RET phase (validation only at the phase's end,
outside the window). With N = 1 torchrun's world is a single process: no process group, no
all-reduce. Every
process trains with one torch thread (--threads 1; torchrun also sets OMP_NUM_THREADS=1 for N > 1),
so 2 processes use the 2 cores that 1 process leaves half idle.

Two cases on a small real EuroSAT subset (10 classes x 30 training images):
  conv4     conv4 at 32 px, --tune all (the whole net trained: 113k parameters all-reduced)
  lite0     efficientnet_lite0 at 64 px, --tune head on cached features (the head's parameters only;
            the features are computed by a warm-up run first, so both runs read them from the cache)

    python benchmarks/ddp.py --out benchmarks/out/ddp        # prints the table, writes ddp.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tuning import DATA, episodes_per_second  # noqa: E402

SUBSET = ["--train-per-class", "30", "--val-per-class", "5", "--test-per-class", "5"]
SUBSET += ["--minority-classes", "4", "--minority-shots", "5", "--seed", "0", "--no-progress"]
SUBSET += ["--acf-episodes", "0", "--svm-c", "1", "--threads", "1"]  # 1 thread per process, as torchrun sets
# the method BENCHMARKS.md measured, named: the default is rfmml-plus since issue 11
SUBSET += ["--method", "rfmml"]
CASES = {
    "conv4": ["--backbone", "conv4", "--no-pretrained", "--tune", "all", "--image-size", "32"],
    "lite0": ["--backbone", "efficientnet_lite0", "--tune", "head", "--image-size", "64"],
}
EPISODES = {"conv4": 240, "lite0": 4000}
TIMING_ENV = "RFMML_BENCH_ALLREDUCE"  # the worker writes its all-reduce seconds to this path + rank


def worker(flags: list[str]) -> int:
    """Under torchrun: rfmml-train's main with the gradient all-reduce timed (one JSON per rank)."""
    from rfmml.trainer import distributed
    from rfmml.trainer.cli import main

    spent = {"seconds": 0.0, "calls": 0, "pure_ms": None, "parameters": 0}
    average = distributed.World.average_gradients

    def timed(self, params):
        if spent["pure_ms"] is None:  # the first step, the same on every rank: before the timed window
            spent["pure_ms"] = pure_allreduce_ms(self, params, average)
            spent["parameters"] = sum(p.numel() for p in params)
        start = time.perf_counter()
        average(self, params)
        spent["seconds"] += time.perf_counter() - start
        spent["calls"] += 1

    distributed.World.average_gradients = timed
    code = main(flags)
    rank = os.environ.get("RANK", "0")
    Path(f"{os.environ[TIMING_ENV]}.{rank}").write_text(json.dumps(spent))
    return code


def pure_allreduce_ms(world, params, average, repeats: int = 100) -> float:
    """Median ms of one gradient average of ``params``' shapes, back to back (no training between:
    the communication itself, without waiting for a slower rank's step)."""
    import statistics

    import torch

    fakes = [torch.nn.Parameter(torch.zeros_like(p)) for p in params]
    times = []
    for _ in range(repeats + 10):
        for f in fakes:
            f.grad = torch.ones_like(f)
        start = time.perf_counter()
        average(world, fakes)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[10:])


def launch(nproc: int, flags: list[str], timing: Path, log: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    command += ["--master-port", str(29500 + nproc), __file__, "worker", *flags]
    print(" ".join(command[3:]), flush=True)
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, TIMING_ENV: str(timing)}
    )
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")


def measure(case: str, nproc: int, out: Path, cache: Path, round_: int) -> dict:
    """One run of ``case`` on ``nproc`` processes: episodes/s, all-reduce seconds per episode."""
    name = f"{case}-{nproc}-r{round_}"
    run = out / name
    episodes = EPISODES[case]
    flags = ["--data", str(DATA), *SUBSET, *CASES[case], "--ret-episodes", str(episodes)]
    flags += ["--log-every", str(episodes // 20), "--val-every", str(episodes)]
    flags += ["--cache-dir", str(cache), "--out", str(run)]
    timing = out / f"{name}.allreduce"
    launch(nproc, flags, timing, out / f"{name}.log")
    spent = json.loads(Path(f"{timing}.0").read_text())
    return {
        "case": case,
        "processes": nproc,
        "round": round_,
        "episodes": episodes,
        "episodes_per_s": round(episodes_per_second(run)["ret"], 2),
        "allreduce_calls": spent["calls"],
        "allreduce_ms_per_step": round(1000 * spent["seconds"] / max(spent["calls"], 1), 3),
        "allreduce_ms_per_episode": round(1000 * spent["seconds"] / episodes, 3),
        "parameters_averaged": spent["parameters"],
        "pure_allreduce_ms": None if spent["pure_ms"] is None else round(spent["pure_ms"], 3),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.exit(worker(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/ddp"))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--rounds", type=int, default=3, help="1 and 2 processes interleaved, per round")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cache"
    if "lite0" in args.cases and not (args.out / "lite0-warmup" / "eval.json").exists():
        launch(1, ["--data", str(DATA), *SUBSET, *CASES["lite0"], "--ret-episodes", "2",
                   "--cache-dir", str(cache), "--out", str(args.out / "lite0-warmup")],
               args.out / "warmup.allreduce", args.out / "lite0-warmup.log")  # fmt: skip
    rows = []
    for round_ in range(args.rounds):
        for case in args.cases:
            for nproc in (1, 2):
                rows.append(measure(case, nproc, args.out, cache, round_))
                print(json.dumps(rows[-1]), flush=True)
    machine = {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    (args.out / "ddp.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    print(f"machine: {machine}")
    print("| case | round | processes | episodes/s | ratio | in all-reduce ms/step | ms/episode | pure ms |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        one = next(
            r for r in rows if (r["case"], r["round"], r["processes"]) == (row["case"], row["round"], 1)
        )
        ratio = row["episodes_per_s"] / one["episodes_per_s"]
        cells = [row["case"], row["round"], row["processes"], row["episodes_per_s"], f"{ratio:.2f}"]
        cells += [row["allreduce_ms_per_step"], row["allreduce_ms_per_episode"], row["pure_allreduce_ms"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
