"""The fuzz suite at its long size: the generators of ``tests/fuzz`` over thousands of seeded cases.

    python benchmarks/fuzz.py --cases 5000 --seed 0 --json fuzz-failures.json
    python benchmarks/fuzz.py --repro head-tamper:17          # one case again, with its full output

Prints a markdown table "family | tried | clean | crash | hang | wrong | lost | peak RSS" (for
BENCHMARKS.md) and writes every case that is not clean to a JSON file (family, seed, kind, reason,
command line, exit code, stderr tail) so it can be reproduced with ``--repro family:seed``. Cases are
spread over the families in proportion to their fast CI size; families built from a fixed table (the
bombs, the valid inputs) run their table a few times at most. Peak RSS: the largest child of the
memory-bound families (run under RLIMIT_AS), else this process's own peak (in-process cases).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fuzz")]

from fuzz_families import FAMILIES, make_case, missing  # noqa: E402
from fuzz_harness import KINDS, Verdict, run_case  # noqa: E402
from fuzz_world import World, build_world  # noqa: E402

CAPPED = {"valid": 10, "tile-bomb": 10, "scene-bomb": 14, "head-bomb": 4, "flags-demo": 15, "train-data": 60,
          "kill": 15, "two-writers": 12}  # fmt: skip


def plan(total: int, families: list[str]) -> dict[str, int]:
    """Cases per family: proportional to the fast CI sizes, the fixed-table families capped."""
    weights = {name: FAMILIES[name][1] for name in families}
    scale = total / sum(weights.values())
    counts = {name: max(1, round(weight * scale)) for name, weight in weights.items()}
    for name, cap in CAPPED.items():
        if name in counts:
            counts[name] = min(counts[name], max(cap, FAMILIES[name][1]))
    spare = total - sum(counts.values())
    free = [name for name in families if name not in CAPPED]
    for i in range(max(spare, 0)):
        counts[free[i % len(free)]] += 1
    return counts


def run_family(world: World, family: str, count: int, first_seed: int, keep: bool) -> list[Verdict]:
    verdicts = []
    for seed in range(first_seed, first_seed + count):
        case = make_case(family, seed, world)
        verdicts.append(run_case(case))
        if not keep and case.workdir is not None:
            shutil.rmtree(case.workdir, ignore_errors=True)
    return verdicts


def table(results: dict[str, list[Verdict]], self_rss_mib: float) -> str:
    lines = [
        "| family | tried | clean | crash | hang | wrong | lost | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    totals: Counter = Counter()
    for family, verdicts in results.items():
        kinds = Counter(v.kind for v in verdicts)
        totals.update(kinds)
        totals["tried"] += len(verdicts)
        children = [v.outcome.peak_rss_mib for v in verdicts if v.outcome.peak_rss_mib is not None]
        rss = f"{max(children):.0f} MiB (subprocess)" if children else "in-process"
        cells = " | ".join(str(kinds.get(kind, 0)) for kind in KINDS)
        lines.append(f"| {family} | {len(verdicts)} | {cells} | {rss} |")
    cells = " | ".join(f"**{totals.get(kind, 0)}**" for kind in KINDS)
    lines.append(f"| **all** | **{totals['tried']}** | {cells} | {self_rss_mib:.0f} MiB (this process) |")
    return "\n".join(lines)


def failure_records(results: dict[str, list[Verdict]]) -> list[dict]:
    records = []
    for verdicts in results.values():
        for v in verdicts:
            if v.kind == "clean":
                continue
            records.append({
                "family": v.case.family, "seed": v.case.seed, "kind": v.kind, "reason": v.reason,
                "note": v.case.note, "command": v.case.command_line(), "exit": v.outcome.code,
                "stderr_tail": v.outcome.stderr[-1500:], "seconds": round(v.outcome.seconds, 2),
            })  # fmt: skip
    return records


def repro(world: World, spec: str) -> int:
    family, seed = spec.rsplit(":", 1)
    case = make_case(family, int(seed), world)
    verdict = run_case(case)
    print(verdict.line())
    print(f"note: {case.note}\n--- stdout\n{verdict.outcome.stdout}\n--- stderr\n{verdict.outcome.stderr}")
    return 0 if verdict.kind == "clean" else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000, help="total number of cases (default 5000)")
    parser.add_argument("--seed", type=int, default=0, help="first seed of every family (default 0)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list (default: all)")
    parser.add_argument("--json", type=Path, default=Path("fuzz-failures.json"), help="failing cases")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep every case's files")
    parser.add_argument("--repro", metavar="FAMILY:SEED", help="run one case and print its output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    families = [name for name in args.families.split(",") if name]
    unknown = [name for name in families if name not in FAMILIES]
    if unknown or args.cases < 1:
        print(f"fuzz: error: unknown families {unknown} (known: {', '.join(FAMILIES)})", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="rfmml-fuzz-"))
    needs_run = args.repro is not None or any(FAMILIES[name][2] == "run" for name in families)
    with contextlib.redirect_stdout(io.StringIO()):  # the tiny training run's report
        world = build_world(work / "world", train=needs_run)
    try:
        return _run(world, args, families, work)
    finally:
        world.close()


def _run(world: World, args: argparse.Namespace, families: list[str], work: Path) -> int:
    if args.repro:
        return repro(world, args.repro)
    results: dict[str, list[Verdict]] = defaultdict(list)
    start = time.perf_counter()
    for family, count in plan(args.cases, families).items():
        reason = missing(family, world)
        if reason is not None:
            print(f"{family}: skipped: {reason}", file=sys.stderr)
            continue
        began = time.perf_counter()
        results[family] = run_family(world, family, count, args.seed, args.keep)
        bad = sum(v.kind != "clean" for v in results[family])
        print(
            f"{family}: {count} cases, {bad} not clean, {time.perf_counter() - began:.1f} s", file=sys.stderr
        )
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(table(results, self_rss))
    records = failure_records(results)
    args.json.write_text(json.dumps(records, indent=1))
    tried = sum(len(v) for v in results.values())
    print(f"\n{tried} cases in {time.perf_counter() - start:.0f} s (seed {args.seed}); "
          f"{len(records)} not clean -> {args.json}")  # fmt: skip
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if records else 0


if __name__ == "__main__":
    sys.exit(main())
