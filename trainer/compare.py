"""rfmml-compare: one table (markdown + CSV) and plots from several training runs.

Each run folder holds eval.json (DESIGN's schema) and config.json / split.json. Runs are grouped by
method (with "+init" when the backbone started from another run) and protocol; each group becomes
one row per head, with mean and standard deviation over its runs (seeds).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import click

from rfmml.runtime.cli_shell import entry_point, run_command
from rfmml.runtime.errors import InputError
from rfmml.trainer.compare_plots import plot_confusion, plot_gains, plot_tradeoff

PROG = "rfmml-compare"
METRICS = ("majority", "minority", "overall")
HEAD_ORDER = ("linear", "proto", "svm")
POSTHOC_FILE = "posthoc.json"  # benchmarks/prior_correction.py: test-time head candidates of a run


class CompareError(InputError):
    """A run folder that cannot be compared; one line for the user."""


@dataclass(frozen=True)
class RunResult:
    """One run's test results. heads: head -> {"overall","majority","minority","per_class"}."""

    run_dir: Path
    method: str
    group: str
    heads: dict[str, dict]
    minority: tuple[str, ...]
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    seed: int | None = None  # the split's seed (the wins table compares methods seed by seed)


@dataclass(frozen=True)
class Row:
    """A table row: method and head, accuracies as fractions (mean, std over n runs)."""

    group: str
    method: str
    head: str
    n: int
    mean: dict[str, float]
    std: dict[str, float]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path.parent}: no {path.name} (is this a finished rfmml-train run?)") from None
    except json.JSONDecodeError as error:
        raise CompareError(f"{path}: not valid JSON ({error.msg})") from None
    except UnicodeDecodeError:
        raise CompareError(f"{path}: not UTF-8 text (not a file written by rfmml-train)") from None


def protocol_label(split: dict) -> str:
    """Group key of a split: how many classes, how many minority classes and their shot count."""
    minority = split.get("minority", [])
    shots = sorted({len(split["train"][name]) for name in minority}) if minority else []
    shot_text = "/".join(str(s) for s in shots) if shots else "-"
    return f"{len(split['classes'])} classes, {len(minority)} minority x {shot_text} shots"


def split_digest(split: dict) -> str:
    canonical = json.dumps({k: split[k] for k in ("classes", "train", "val", "test")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:8]


def load_run_result(run_dir: str | Path, group_by: str = "protocol", label: str = "method") -> RunResult:
    """One run's results; ``label`` "method" names its row by eval.json's method (+init when
    warm-started), "dir" by the run folder's name (for variants of one method)."""
    run_dir = Path(run_dir)
    evaluation = _read_json(run_dir / "eval.json")
    config = _read_json(run_dir / "config.json")
    split = _read_json(run_dir / "split.json")
    missing = [
        key for key in ("classes", "train", "val", "test") if not isinstance(split.get(key), (list, dict))
    ]
    if missing:
        raise CompareError(f"{run_dir}/split.json: not an rfmml split (missing {', '.join(missing)})")
    method = str(evaluation.get("method", config.get("method", "?")))
    if config.get("init"):
        method += "+init"
    if label == "dir":
        method = run_dir.resolve().name
    heads = {h: evaluation[h] for h in HEAD_ORDER if isinstance(evaluation.get(h), dict)}
    if heads and (run_dir / POSTHOC_FILE).exists():  # extra heads, after the run's own
        extra = _read_json(run_dir / POSTHOC_FILE)
        heads |= {h: v for h, v in extra.items() if h not in HEAD_ORDER and isinstance(v, dict)}
    if not heads:
        raise CompareError(f"{run_dir}/eval.json: no head results (expected one of {HEAD_ORDER})")
    group = protocol_label(split) if group_by == "protocol" else f"split {split_digest(split)}"
    return RunResult(
        run_dir=run_dir,
        method=method,
        group=group,
        heads=heads,
        minority=tuple(split.get("minority", [])),
        confusion=evaluation.get("confusion", {}),
        classes=tuple(split["classes"]),
        seed=split["seed"] if isinstance(split.get("seed"), int) else None,
    )


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); 0 for a single run."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(results: list[RunResult]) -> list[Row]:
    """Rows sorted by group, then method (plain first), then head. std is the sample std (n-1)."""
    buckets: dict[tuple[str, str, str], list[dict]] = {}
    for result in results:
        for head, metrics in result.heads.items():
            buckets.setdefault((result.group, result.method, head), []).append(metrics)
    rows = []
    for (group, method, head), metric_list in buckets.items():
        mean, std = {}, {}
        for metric in METRICS:  # None: the run had no test image in that group (no minority class)
            values = [float(m[metric]) for m in metric_list if m.get(metric) is not None]
            mean[metric], std[metric] = _mean_std(values) if values else (math.nan, math.nan)
        rows.append(Row(group, method, head, len(metric_list), mean, std))
    return sorted(rows, key=lambda r: (r.group, r.method != "plain", r.method, head_rank(r.head)))


def head_rank(head: str) -> tuple[int, str]:
    """Sort key of a head: linear, proto, svm, then post-hoc heads by name."""
    return (HEAD_ORDER.index(head), "") if head in HEAD_ORDER else (len(HEAD_ORDER), head)


def format_cell(row: Row, metric: str) -> str:
    if math.isnan(row.mean[metric]):
        return "-"
    mean = 100 * row.mean[metric]
    return f"{mean:.1f}" if row.n == 1 else f"{mean:.1f} ± {100 * row.std[metric]:.1f}"


def markdown_table(rows: list[Row]) -> str:
    lines = []
    for group in dict.fromkeys(r.group for r in rows):
        lines += [
            f"### {group}",
            "",
            "| method | head | runs | majority % | minority % | overall % |",
            "|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if r.group == group):
            cells = " | ".join(format_cell(row, m) for m in METRICS)
            lines.append(f"| {row.method} | {row.head} | {row.n} | {cells} |")
        lines.append("")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["group", "method", "head", "runs"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
        )
        for row in rows:
            values = [f"{v:.4f}" for m in METRICS for v in (row.mean[m], row.std[m])]
            writer.writerow([row.group, row.method, row.head, row.n, *values])


def per_class_gain(results: list[RunResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Per group: "method/head" -> class -> mean accuracy minus plain's mean (linear head)."""

    def class_means(items: list[RunResult], head: str) -> dict[str, float]:
        acc: dict[str, list[float]] = {}
        for result in items:
            for name, value in result.heads[head]["per_class"].items():
                if value is not None:
                    acc.setdefault(name, []).append(float(value))
        return {name: statistics.mean(v) for name, v in acc.items()}

    gains: dict[str, dict[str, dict[str, float]]] = {}
    for group in dict.fromkeys(r.group for r in results):
        members = [r for r in results if r.group == group]
        plain = [r for r in members if r.method == "plain" and "linear" in r.heads]
        if not plain:
            continue
        base = class_means(plain, "linear")
        for method in dict.fromkeys(r.method for r in members if r.method != "plain"):
            runs = [r for r in members if r.method == method]
            for head in HEAD_ORDER:
                if all(head in r.heads for r in runs):
                    means = class_means(runs, head)
                    gains.setdefault(group, {})[f"{method}/{head}"] = {
                        c: means[c] - base[c] for c in base if c in means
                    }
    return gains


def run_label(run_dir: Path, all_runs: list[Path]) -> str:
    """A file-name-safe label unique among ``all_runs``: the path below their common folder."""
    resolved = [p.resolve() for p in all_runs]
    common = Path(os.path.commonpath(resolved)) if len(resolved) > 1 else run_dir.resolve().parent
    return "_".join(run_dir.resolve().relative_to(common).parts) or run_dir.resolve().name


def write_report(results: list[RunResult], out: Path, baselines: tuple[str, ...] | None = None) -> list[Row]:
    """README.md (table, wins table, plots), results.csv and the PNGs in ``out``; the table's rows."""
    from rfmml.trainer import compare_wins  # imports this module: imported here, not at the top

    baselines = compare_wins.DEFAULT_BASELINES if baselines is None else baselines
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(results)
    write_csv(rows, out / "results.csv")
    text = [
        "# rfmml-compare report",
        "",
        "Accuracy on the test set, mean ± sample std over runs.",
        "",
        markdown_table(rows),
    ]
    wins = compare_wins.wins_table(results, baselines)
    if wins:
        text += [f"Baselines: {', '.join(baselines)}. Margins in accuracy points (seed order).", "", wins]
    for index, (group, points) in enumerate(compare_wins.tradeoff_points(results).items()):
        name = f"overall_vs_minority_{index}.png"
        plot_tradeoff(points, group, out / name)
        text += [f"![overall vs minority accuracy, {group}]({name})", ""]
    for index, (group, gains) in enumerate(per_class_gain(results).items()):
        # seeds may draw different minority classes: mark a class that is minority in any run
        minority = tuple(sorted({name for r in results if r.group == group for name in r.minority}))
        name = f"per_class_gain_{index}.png"
        plot_gains(gains, minority, out / name)
        text += [f"![per-class gain, {group}]({name})", ""]
    for result in results:
        label = run_label(result.run_dir, [r.run_dir for r in results])
        for head, matrix in result.confusion.items():
            name = f"confusion_{label}_{head}.png"
            plot_confusion(
                matrix, result.classes, f"{result.run_dir.name} ({result.method}, {head})", out / name
            )
    (out / "README.md").write_text("\n".join(text))
    return rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="report",
    show_default=True,
    help="Folder for README.md, results.csv and the PNG plots.",
)
@click.option(
    "--group-by",
    type=click.Choice(["protocol", "split"]),
    default="protocol",
    show_default=True,
    help="Average runs over seeds that share the protocol (class count, minority shots) or "
    "the exact split file.",
)
@click.option(
    "--label",
    type=click.Choice(["method", "dir"]),
    default="method",
    show_default=True,
    help="Name rows by the training method, or by the run folder's name (variants of a method).",
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    metavar="METHOD",
    help="A baseline method (repeatable) for the wins table, which sets every other method against "
    "the best baseline of each seed.  [default: frozen, plain, reweight, resample, logit-adjust, "
    "protonet]",
)
def command(runs: tuple[str, ...], out: str, group_by: str, label: str, baselines: tuple[str, ...]) -> None:
    """Compare finished runs: rfmml-compare runs/* --out report/"""
    results = [load_run_result(run, group_by, label) for run in runs]
    rows = write_report(results, Path(out), baselines or None)
    click.echo(markdown_table(rows))
    click.echo(f"report written to {Path(out) / 'README.md'}")


def main(argv: list[str] | None = None) -> int:
    """Run ``rfmml-compare`` on ``argv``; return the exit code (0 ok, 2 bad input, ...) instead of exiting."""
    return run_command(command, argv, PROG)


cli = entry_point(command, PROG)
