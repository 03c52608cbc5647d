"""rfmml-compare's seed-by-seed view (issue 11): each method against the best baseline of its seed.

A mean over seeds can hide a method that wins big on one seed and loses on the others; the claim to
prove is "beats every baseline on at least 4 of 5 seeds". So, per protocol group and per seed (the
split's seed), the best baseline is the highest accuracy of any baseline method with any head on
that seed, taken separately for overall and for minority accuracy (the two bests may be different
baselines). Every other (method, head), and the post-hoc heads of baseline runs (posthoc.json), then
gets, per seed it ran on, its margin over that best in
points, and its count of strict wins.

The trade-off points (one per run: overall, minority) feed the overall-vs-minority plot.
"""

from __future__ import annotations

from dataclasses import dataclass

from rfmml.trainer.compare import HEAD_ORDER, RunResult, head_rank

# Methods that are baselines by default: everything of the project that is not RF-MML or a variant.
DEFAULT_BASELINES = ("frozen", "plain", "reweight", "resample", "logit-adjust", "protonet")
WIN_METRICS = ("overall", "minority")


@dataclass(frozen=True)
class Best:
    """The best baseline of one seed for one metric: its accuracy (fraction) and "method/head"."""

    value: float
    label: str


@dataclass(frozen=True)
class WinRow:
    """One (method, head) of one group: per metric, its margins (fractions) over the best baseline,
    one per seed in ``seeds`` order."""

    group: str
    method: str
    head: str
    seeds: tuple[int, ...]
    margins: dict[str, tuple[float, ...]]

    def wins(self, metric: str) -> int:
        return sum(1 for m in self.margins[metric] if m > 0)


def _seed(result: RunResult) -> int:
    return -1 if result.seed is None else result.seed


def best_baselines(
    results: list[RunResult], baselines: tuple[str, ...]
) -> dict[tuple[str, int], dict[str, Best]]:
    """(group, seed) -> metric -> the best baseline (first in method/head order on a tie)."""
    best: dict[tuple[str, int], dict[str, Best]] = {}
    ordered = sorted(results, key=lambda r: (r.method, r.run_dir.as_posix()))
    for result in (r for r in ordered if r.method in baselines):
        key = (result.group, _seed(result))
        for head in (h for h in HEAD_ORDER if h in result.heads):  # a run's own heads only
            for metric in WIN_METRICS:
                value = result.heads[head].get(metric)
                current = best.setdefault(key, {}).get(metric)
                if value is not None and (current is None or float(value) > current.value):
                    best[key][metric] = Best(float(value), f"{result.method}/{head}")
    return best


def win_rows(results: list[RunResult], baselines: tuple[str, ...] = DEFAULT_BASELINES) -> list[WinRow]:
    """The non-baseline (method, head) pairs with their margins on every seed that has a baseline."""
    best = best_baselines(results, baselines)
    margins: dict[tuple[str, str, str], dict[int, dict[str, float]]] = {}
    for result in results:
        key = (result.group, _seed(result))
        if key not in best:
            continue
        for head in sorted(result.heads, key=head_rank):
            if result.method in baselines and head in HEAD_ORDER:
                continue  # a baseline; its post-hoc heads (posthoc.json) are contenders
            per_metric = {
                metric: float(result.heads[head][metric]) - best[key][metric].value
                for metric in WIN_METRICS
                if result.heads[head].get(metric) is not None and metric in best[key]
            }
            margins.setdefault((result.group, result.method, head), {})[_seed(result)] = per_metric
    rows = []
    for (group, method, head), by_seed in sorted(
        margins.items(), key=lambda item: (item[0][0], item[0][1], head_rank(item[0][2]))
    ):
        seeds = tuple(sorted(s for s in by_seed if len(by_seed[s]) == len(WIN_METRICS)))
        if seeds:
            values = {m: tuple(by_seed[s][m] for s in seeds) for m in WIN_METRICS}
            rows.append(WinRow(group, method, head, seeds, values))
    return rows


def _signed(points: float) -> str:
    return f"{points:+.1f}"


def wins_table(results: list[RunResult], baselines: tuple[str, ...] = DEFAULT_BASELINES) -> str:
    """Markdown, per group: the best baseline of each seed, then one line per (method, head) with its
    wins and its per-seed margins in points (seed order)."""
    best = best_baselines(results, baselines)
    rows = win_rows(results, baselines)
    lines: list[str] = []
    for group in dict.fromkeys(r.group for r in rows):
        seeds = sorted(s for g, s in best if g == group)
        lines += [f"### {group}: wins against the best baseline of each seed", ""]
        for metric in WIN_METRICS:
            picks = ", ".join(
                f"seed {s} {100 * best[(group, s)][metric].value:.1f} ({best[(group, s)][metric].label})"
                for s in seeds
                if metric in best[(group, s)]
            )
            lines.append(f"Best baseline, {metric}: {picks}.")
        lines += [
            "",
            "| method | head | seeds | overall wins | minority wins | overall margin per seed "
            "(points) | minority margin per seed (points) |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if r.group == group):
            n = len(row.seeds)
            over, mino = (" / ".join(_signed(100 * m) for m in row.margins[k]) for k in WIN_METRICS)
            seeds_text = ",".join(str(s) for s in row.seeds)
            lines.append(
                f"| {row.method} | {row.head} | {seeds_text} | {row.wins('overall')}/{n} | "
                f"{row.wins('minority')}/{n} | {over} | {mino} |"
            )
        lines.append("")
    return "\n".join(lines)


def tradeoff_points(results: list[RunResult]) -> dict[str, dict[str, list[tuple[int, float, float]]]]:
    """Per group: "method/head" -> [(seed, overall, minority)] (fractions), one per run, seed order.
    Runs without a minority result are left out."""
    points: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    for result in results:
        for head in sorted(result.heads, key=head_rank):
            metrics = result.heads[head]
            if metrics.get("overall") is None or metrics.get("minority") is None:
                continue
            label = f"{result.method}/{head}"
            series = points.setdefault(result.group, {}).setdefault(label, [])
            series.append((_seed(result), float(metrics["overall"]), float(metrics["minority"])))
    for group in points.values():
        for series in group.values():
            series.sort()
    return {g: dict(sorted(series.items())) for g, series in points.items()}
