"""rfmml-compare's wins table and overall-vs-minority plot on fixture runs: exact text and points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rfmml.trainer.compare import load_run_result, main
from rfmml.trainer.compare_plots import plot_tradeoff
from rfmml.trainer.compare_wins import tradeoff_points, win_rows, wins_table

CLASSES = ["A", "B", "C"]
# (seed, method, head) -> (majority, minority, overall)
FIXTURE = {
    (0, "plain", "linear"): (0.7, 0.10, 0.50),
    (0, "logit-adjust", "linear"): (0.7, 0.40, 0.60),
    (0, "rfmml", "proto"): (0.8, 0.35, 0.65),
    (0, "rfmml", "svm"): (0.6, 0.45, 0.55),
    (1, "plain", "linear"): (0.9, 0.30, 0.70),
    (1, "logit-adjust", "linear"): (0.8, 0.50, 0.68),
    (1, "rfmml", "proto"): (0.8, 0.55, 0.72),
    (1, "rfmml", "svm"): (0.8, 0.20, 0.60),
}


def make_runs(root: Path) -> list[Path]:
    """One run folder per (seed, method) with eval.json, config.json and a split of that seed."""
    runs: dict[tuple[int, str], dict] = {}
    for (seed, method, head), (maj, mino, overall) in FIXTURE.items():
        per_class = {"A": maj, "B": maj, "C": mino}
        runs.setdefault((seed, method), {"method": method})[head] = {
            "majority": maj,
            "minority": mino,
            "overall": overall,
            "per_class": per_class,
        }
    folders = []
    for (seed, method), evaluation in runs.items():
        run = root / f"seed{seed}" / method
        run.mkdir(parents=True)
        split = {
            "classes": CLASSES,
            "majority": ["A", "B"],
            "minority": ["C"],
            "seed": seed,
            "train": {"A": ["a1", "a2"], "B": ["b1", "b2"], "C": ["c1"]},
            "val": {c: [] for c in CLASSES},
            "test": {c: [f"{c}t"] for c in CLASSES},
        }
        (run / "eval.json").write_text(json.dumps(evaluation))
        (run / "split.json").write_text(json.dumps(split))
        (run / "config.json").write_text(json.dumps({"method": method}))
        folders.append(run)
    return folders


def test_wins_table_text(tmp_path: Path) -> None:
    results = [load_run_result(r) for r in make_runs(tmp_path)]
    assert wins_table(results).splitlines() == [
        "### 3 classes, 1 minority x 1 shots: wins against the best baseline of each seed",
        "",
        "Best baseline, overall: seed 0 60.0 (logit-adjust/linear), seed 1 70.0 (plain/linear).",
        "Best baseline, minority: seed 0 40.0 (logit-adjust/linear), seed 1 50.0 (logit-adjust/linear).",
        "",
        "| method | head | seeds | overall wins | minority wins | overall margin per seed (points) "
        "| minority margin per seed (points) |",
        "|---|---|---|---|---|---|---|",
        "| rfmml | proto | 0,1 | 2/2 | 1/2 | +5.0 / +2.0 | -5.0 / +5.0 |",
        "| rfmml | svm | 0,1 | 0/2 | 1/2 | -5.0 / -10.0 | +5.0 / -30.0 |",
    ]


def test_baselines_choose_who_is_compared(tmp_path: Path) -> None:
    results = [load_run_result(r) for r in make_runs(tmp_path)]
    rows = win_rows(results, baselines=("plain",))  # logit-adjust is now a contender
    assert [(r.method, r.head) for r in rows] == [
        ("logit-adjust", "linear"),
        ("rfmml", "proto"),
        ("rfmml", "svm"),
    ]
    la = rows[0]
    assert la.margins["overall"] == pytest.approx((0.10, -0.02))
    assert la.margins["minority"] == pytest.approx((0.30, 0.20))
    assert (la.wins("overall"), la.wins("minority")) == (1, 2)


def test_plot_points_are_the_runs(tmp_path: Path) -> None:
    results = [load_run_result(r) for r in make_runs(tmp_path)]
    (group, points), *_ = tradeoff_points(results).items()
    assert points["rfmml/proto"] == [(0, 0.65, 0.35), (1, 0.72, 0.55)]
    drawn = plot_tradeoff(points, group, tmp_path / "plot.png")
    assert list(drawn) == ["logit-adjust/linear", "plain/linear", "rfmml/proto", "rfmml/svm"]
    np.testing.assert_allclose(drawn["rfmml/proto"], [(65.0, 35.0), (72.0, 55.0)])
    np.testing.assert_allclose(drawn["plain/linear"], [(50.0, 10.0), (70.0, 30.0)])
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_report_holds_wins_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "report"
    runs = make_runs(tmp_path / "runs")
    assert main([str(r) for r in runs] + ["--out", str(out), "--baseline", "plain"]) == 0
    readme = (out / "README.md").read_text()
    assert "Baselines: plain." in readme
    assert "| logit-adjust | linear | 0,1 | 1/2 | 2/2 | +10.0 / -2.0 | +30.0 / +20.0 |" in readme
    assert (
        "![overall vs minority accuracy, 3 classes, 1 minority x 1 shots](overall_vs_minority_0.png)"
        in readme
    )
    assert (out / "overall_vs_minority_0.png").stat().st_size > 1000


def test_posthoc_heads_are_contenders_not_baselines(tmp_path: Path) -> None:
    runs = make_runs(tmp_path)
    plain0 = next(r for r in runs if r.parts[-2:] == ("seed0", "plain"))
    posthoc = {"proto": {"overall": 0.0, "minority": 0.0, "majority": 0.0, "per_class": {}}}
    posthoc["cos+pc"] = {"overall": 0.99, "minority": 0.98, "majority": 1.0, "per_class": {}, "tau": 0.1}
    (plain0 / "posthoc.json").write_text(json.dumps(posthoc))
    results = [load_run_result(r) for r in runs]
    plain = next(r for r in results if r.run_dir == plain0)
    assert list(plain.heads) == ["linear", "cos+pc"]  # posthoc's own-head check ("proto") is left out
    rows = win_rows(results)
    assert [(r.method, r.head, r.seeds) for r in rows] == [
        ("plain", "cos+pc", (0,)),
        ("rfmml", "proto", (0, 1)),
        ("rfmml", "svm", (0, 1)),
    ]
    assert rows[0].margins["overall"] == pytest.approx((0.39,))  # over logit-adjust/linear's 0.60
    assert "Best baseline, overall: seed 0 60.0 (logit-adjust/linear)" in wins_table(results)
