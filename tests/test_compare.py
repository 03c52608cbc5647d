"""rfmml-compare on fixture runs: exact table numbers, CSV, plots, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rfmml.trainer.compare import load_run_result, main, markdown_table, summarize

CLASSES = ["A", "B", "C"]


def make_run(
    root: Path, name: str, method: str, heads: dict[str, tuple[float, float, float]], init: str | None = None
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    split = {
        "data_root": "/d",
        "classes": CLASSES,
        "majority": ["A", "B"],
        "minority": ["C"],
        "seed": 0,
        "train": {"A": ["a1", "a2", "a3"], "B": ["b1", "b2", "b3"], "C": ["c1"]},
        "val": {c: [] for c in CLASSES},
        "test": {c: [f"{c}t"] for c in CLASSES},
    }
    evaluation: dict = {"method": method, "n_test": {c: 1 for c in CLASSES}}
    for head, (maj, mino, overall) in heads.items():
        evaluation[head] = {
            "majority": maj,
            "minority": mino,
            "overall": overall,
            "per_class": {"A": maj, "B": maj, "C": mino},
        }
    evaluation["confusion"] = {next(iter(heads)): [[1, 0, 0], [0, 1, 0], [1, 0, 0]]}
    (run / "eval.json").write_text(json.dumps(evaluation))
    (run / "split.json").write_text(json.dumps(split))
    (run / "config.json").write_text(json.dumps({"method": method, "init": init}))
    return run


def test_table_mean_and_std_over_seeds(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path, "plain0", "plain", {"linear": (0.80, 0.10, 0.50)}),
        make_run(tmp_path, "plain1", "plain", {"linear": (0.90, 0.30, 0.70)}),
        make_run(tmp_path, "rf0", "rfmml", {"proto": (0.85, 0.55, 0.73), "svm": (0.8, 0.4, 0.64)}),
        make_run(tmp_path, "rfi", "rfmml", {"proto": (0.5, 0.5, 0.5)}, init="runs/plain0"),
    ]
    rows = summarize([load_run_result(r) for r in runs])
    assert [(r.method, r.head, r.n) for r in rows] == [
        ("plain", "linear", 2),
        ("rfmml", "proto", 1),
        ("rfmml", "svm", 1),
        ("rfmml+init", "proto", 1),
    ]
    plain = rows[0]
    assert plain.mean == pytest.approx({"majority": 0.85, "minority": 0.20, "overall": 0.60})
    # sample std of (0.8, 0.9) = 0.0707107; of (0.1, 0.3) = 0.1414214
    assert plain.std == pytest.approx({"majority": 0.0707107, "minority": 0.1414214, "overall": 0.1414214})
    table = markdown_table(rows)
    assert "### 3 classes, 1 minority x 1 shots" in table
    assert "| plain | linear | 2 | 85.0 ± 7.1 | 20.0 ± 14.1 | 60.0 ± 14.1 |" in table
    assert "| rfmml | proto | 1 | 85.0 | 55.0 | 73.0 |" in table
    assert "| rfmml+init | proto | 1 | 50.0 | 50.0 | 50.0 |" in table


def test_cli_writes_report_csv_and_plots(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path, "plain0", "plain", {"linear": (0.80, 0.10, 0.50)}),
        make_run(tmp_path, "rf0", "rfmml", {"proto": (0.85, 0.55, 0.73)}),
    ]
    out = tmp_path / "report"
    assert main([str(r) for r in runs] + ["--out", str(out)]) == 0
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[1]["method"] == "rfmml" and rows[1]["minority_mean"] == "0.5500"
    assert (out / "per_class_gain_0.png").stat().st_size > 1000
    assert (out / "confusion_rf0_proto.png").stat().st_size > 1000
    assert "per_class_gain_0.png" in (out / "README.md").read_text()


def test_cli_rejects_unfinished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "half").mkdir()
    assert main([str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no eval.json" in err


def test_nested_seed_folders_get_distinct_confusion_plots(tmp_path: Path) -> None:
    runs = [make_run(tmp_path / f"seed{s}", "rfmml", "rfmml", {"proto": (0.8, 0.5, 0.68)}) for s in (0, 1)]
    out = tmp_path / "report"
    assert main([str(r) for r in runs] + ["--out", str(out)]) == 0
    assert {p.name for p in out.glob("confusion_*.png")} == {
        "confusion_seed0_rfmml_proto.png",
        "confusion_seed1_rfmml_proto.png",
    }


def test_group_without_minority_is_a_dash_not_a_crash(tmp_path: Path) -> None:
    run = make_run(tmp_path, "plain-majority", "plain", {"linear": (0.9, 0.0, 0.9)})
    evaluation = json.loads((run / "eval.json").read_text())
    evaluation["linear"]["minority"] = None  # no minority class in the test set
    evaluation["linear"]["per_class"]["C"] = None
    (run / "eval.json").write_text(json.dumps(evaluation))
    rows = summarize([load_run_result(run)])
    assert "| plain | linear | 1 | 90.0 | - | 90.0 |" in markdown_table(rows)


def test_malformed_split_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "r", "rfmml", {"proto": (0.8, 0.5, 0.68)})
    (run / "split.json").write_text(json.dumps({"classes": CLASSES}))
    assert main([str(run)]) == 2
    assert "not an rfmml split" in capsys.readouterr().err


def test_label_dir_separates_variants_of_one_method(tmp_path: Path) -> None:
    runs = [
        make_run(tmp_path, "rfmml", "rfmml", {"proto": (0.8, 0.5, 0.68)}),
        make_run(tmp_path, "rfmml-acf1000", "rfmml", {"proto": (0.9, 0.6, 0.78)}),
    ]
    rows = summarize([load_run_result(r, label="dir") for r in runs])
    assert [(r.method, r.n) for r in rows] == [("rfmml", 1), ("rfmml-acf1000", 1)]
    rows = summarize([load_run_result(r) for r in runs])
    assert [(r.method, r.n) for r in rows] == [("rfmml", 2)]


def test_unwritable_out_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "r", "rfmml", {"proto": (0.8, 0.5, 0.68)})
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "report"):  # --out is a file; --out lies under a file
        assert main([str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("rfmml-compare: error: ") and str(blocker) in err, err
