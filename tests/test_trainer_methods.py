"""--method: every baseline and ablation on a small real EuroSAT subset; CE resume; --init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rfmml.trainer import engine
from rfmml.trainer.cli import main
from rfmml.trainer.config_rules import CE_METHODS, METHODS

SUBSET = [
    "--backbone",
    "conv4",
    "--image-size",
    "16",
    "--train-per-class",
    "20",
    "--val-per-class",
    "5",
    "--test-per-class",
    "10",
    "--minority-classes",
    "3",
    "--minority-shots",
    "4",
    "--ret-episodes",
    "12",
    "--acf-episodes",
    "6",
    "--ret-lr",
    "1e-3",
    "--acf-lr",
    "2e-4",
    "--val-every",
    "6",
    "--epochs",
    "2",
    "--lr",
    "1e-3",
    "--lr-step",
    "1",
    "--ce-batch",
    "32",
    "--svm-c",
    "1",
    "--no-progress",
    "--threads",
    "1",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("method", METHODS)
def test_every_method_writes_a_valid_eval(
    method: str, tmp_path: Path, eurosat_root: Path, cache: Path
) -> None:
    out = tmp_path / method
    assert (
        main(
            [
                "--data",
                str(eurosat_root),
                "--method",
                method,
                *SUBSET,
                "--cache-dir",
                str(cache),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "eval.json").read_text())
    assert result["method"] == method
    heads = ("linear", "proto", "svm") if method in CE_METHODS else ("proto", "svm")
    assert [h for h in ("linear", "proto", "svm") if h in result] == list(heads)
    for head in heads:
        assert set(result[head]) == {"overall", "majority", "minority", "per_class"}
        assert len(result[head]["per_class"]) == 10
        matrix = result["confusion"][head]
        assert len(matrix) == 10 and sum(map(sum, matrix)) == 100  # 10 test images x 10 classes
        diagonal = sum(matrix[i][i] for i in range(10))
        assert diagonal / 100 == pytest.approx(result[head]["overall"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    phases = {r["phase"] for r in records}
    expected = {
        "plain": {"ce"},
        "reweight": {"ce"},
        "resample": {"ce"},
        "logit-adjust": {"ce"},
        "protonet": {"protonet"},
        "rfmml": {"ret", "acf"},
        "rfmml-no-ret": {"acf"},
        "rfmml-no-acf": {"ret"},
        "rfmml-plus": {"ret", "acf"},
        "frozen": set(),  # no training, no records
    }[method]
    assert phases == expected
    if method == "protonet":  # fixed episodes: all 10 classes, N = N_max - 1 = 3 shots
        episodes = [r for r in records if r["kind"] == "episode"]
        assert {(r["K"], r["N"]) for r in episodes} == {(10, 3)}


def test_init_starts_from_another_runs_backbone(tmp_path: Path, eurosat_root: Path, cache: Path) -> None:
    base = ["--data", str(eurosat_root), *SUBSET, "--cache-dir", str(cache)]
    assert main([*base, "--method", "plain", "--out", str(tmp_path / "plain")]) == 0
    warm = tmp_path / "warm"
    assert (
        main(
            [
                *base,
                "--method",
                "rfmml",
                "--init",
                str(tmp_path / "plain"),
                "--ret-episodes",
                "0",
                "--acf-episodes",
                "1",
                "--acf-lr",
                "1e-12",
                "--out",
                str(warm),
            ]
        )
        == 0
    )
    plain = torch.load(tmp_path / "plain" / "best.pt", weights_only=True)["model"]
    started = torch.load(warm / "best.pt", weights_only=True)["model"]
    key = "backbone.0.0.weight"  # first conv: an lr of 1e-12 leaves it where --init put it
    assert torch.allclose(plain[key], started[key], atol=1e-6)
    assert json.loads((warm / "config.json").read_text())["init"] == str(tmp_path / "plain")
    assert main([*base, "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 2


def test_cross_entropy_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [
        "--method",
        "reweight",
        "--image-size",
        "16",
        "--epochs",
        "3",
        "--lr-step",
        "2",
        "--svm-c",
        "1",
        "--no-progress",
    ]
    full = tmp_path / "full"
    assert main([*args, "--out", str(full)]) == 0
    original = engine.Engine.validate_and_save
    writes = {"last": 0}

    def interrupting(*args, **kwargs):
        original(*args, **kwargs)  # validation, best.pt on a new best, last.pt: every epoch
        writes["last"] += 1
        if writes["last"] == 2:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(engine.Engine, "validate_and_save", interrupting)
    assert main([*args, "--out", str(cut)]) == 130
    monkeypatch.setattr(engine.Engine, "validate_and_save", original)
    assert main(["--resume", str(cut), "--no-progress"]) == 0

    def records(run: Path) -> list[dict]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert [r["episode"] for r in records(cut) if r["kind"] == "epoch"] == [1, 2, 3]
    assert records(cut) == records(full)
    assert json.loads((cut / "eval.json").read_text()) == json.loads((full / "eval.json").read_text())
    lrs = [r["lr"] for r in records(full) if r["kind"] == "epoch"]
    assert lrs == pytest.approx([1e-3, 1e-3, 2e-4])  # epochs 1, 2, 3 with --lr-step 2


@pytest.mark.parametrize(
    "flags",
    [
        ["--test-per-class", "-3"],
        ["--val-per-class", "-1"],
        ["--train-per-class", "1"],
        ["--workers", "-1"],
        ["--method", "plain", "--epochs", "0"],
    ],
)
def test_bad_numbers_are_one_line_errors(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-range flags: one line naming the flag, exit 2, no run folder (the wording is config's)."""
    assert main([*flags, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rfmml-train: error: ") and "\n" not in err
    assert flags[-2] in err
    assert not (tmp_path / "run").exists()
