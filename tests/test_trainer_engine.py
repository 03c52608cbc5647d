"""The training engine on a toy method (no data, no backbone): cadence of records, validations and
checkpoints, resume equal to an uninterrupted run, the NaN stop, the registry, progress lines."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rfmml.trainer.checkpoint import Checkpoint
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.config_rules import METHODS
from rfmml.trainer.engine import Engine, TrainingDiverged
from rfmml.trainer.method_interface import Phase, StepResult
from rfmml.trainer.methods import METHOD_BUILDERS
from rfmml.trainer.train_progress import TrainProgress


class ToyMethod:
    """Fits y = 1 with a 2 -> 1 linear model; phase "a" counts episodes, phase "b" epochs of 3 batches."""

    has_validation = True

    def __init__(self, nan_at: tuple[str, int] | None = None) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(2, 1)
        self.head = torch.nn.Linear(1, 1)  # a second trained module, saved as method_modules["head"]
        self.gen = torch.Generator().manual_seed(1)
        self.phases = [
            Phase("a", 7, "episode", 0.1, "--a-lr", log_every=2, val_every=3),
            Phase("b", 4, "epoch", 0.05, "--b-lr", log_every=1, val_every=2, ticks=3, tick_unit="batches"),
        ]
        self.nan_at = nan_at

    def describe(self) -> str:
        return "toy"

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"head": self.head}

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.model.parameters(), *self.head.parameters()]

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        return ((self.head(self.model(x)) - 1.0) ** 2).mean()

    def step(self, phase_index: int, step: int, optimizer, tick) -> StepResult:
        name = self.phases[phase_index].name
        x = torch.randn(8, 2, generator=self.gen)
        loss = self._loss(x)
        if self.nan_at == (name, step):
            loss = loss * float("nan")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        tick(self.phases[phase_index].ticks)
        value = loss.detach()
        return StepResult(
            value, lambda: {"kind": "toy", "phase": name, "episode": step, "loss": float(value)}
        )

    def validate(self) -> dict[str, Any]:
        with torch.no_grad():
            loss = float(self._loss(torch.ones(4, 2)))
        score = 1.0 / (1.0 + loss)
        return {"overall": score, "majority": score, "minority": score}

    def progress_note(self, phase_index: int, step: int) -> str:
        return f"note {step}"

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {"gen": self.gen.get_state()}

    def load_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.gen.set_state(state["gen"])


def _engine(method: ToyMethod, run_dir: Path, warnings: list[str] | None = None) -> Engine:
    run_dir.mkdir(exist_ok=True)
    config = TrainConfig(out=str(run_dir), backbone="conv4", progress=False)
    return Engine(
        method, config, run_dir, torch.device("cpu"), (warnings if warnings is not None else []).append
    )


def _records(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_cadence_of_records_validations_and_checkpoints(tmp_path: Path) -> None:
    method = ToyMethod()
    position = _engine(method, tmp_path).run()
    assert (position.phase_index, position.step) == (1, 4)
    rows = _records(tmp_path)
    steps = [(r["phase"], r["episode"]) for r in rows if r["kind"] == "toy"]
    vals = [(r["phase"], r["episode"]) for r in rows if r["kind"] == "val"]
    assert steps == [("a", 2), ("a", 4), ("a", 6), ("a", 7), ("b", 1), ("b", 2), ("b", 3), ("b", 4)]
    assert vals == [("a", 3), ("a", 6), ("a", 7), ("b", 2), ("b", 4)]
    last = Checkpoint.load(tmp_path / "last.pt", "conv4")
    assert (last.phase, last.phase_index, last.unit, last.step) == ("b", 1, "epoch", 4)
    assert set(last.method_modules) == {"head"} and last.optimizer is not None
    best = Checkpoint.load(tmp_path / "best.pt", "conv4")
    assert best.optimizer is None
    assert best.best_val == max(r["val_overall"] for r in rows if r["kind"] == "val")


@pytest.mark.parametrize("stop_after", [1, 3, 4])  # mid phase a, at a's end, mid phase b
def test_resume_equals_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_after: int
) -> None:
    full = ToyMethod()
    _engine(full, tmp_path / "full").run()

    original = Engine.validate_and_save
    calls = {"n": 0}

    def interrupting(self, *args):
        original(self, *args)
        calls["n"] += 1
        if calls["n"] == stop_after:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(Engine, "validate_and_save", interrupting)
    with pytest.raises(KeyboardInterrupt):
        _engine(ToyMethod(), cut).run()
    monkeypatch.setattr(Engine, "validate_and_save", original)
    with open(cut / "metrics.jsonl", "a") as handle:  # a record past last.pt (dropped on resume)
        handle.write(json.dumps({"kind": "toy", "phase": "b", "episode": 4, "loss": 0.0}) + "\n")
    resumed = ToyMethod()  # fresh weights and generator: all state comes from last.pt
    _engine(resumed, cut).run(Checkpoint.load(cut / "last.pt"))
    assert _records(cut) == _records(tmp_path / "full")
    for a, b in zip(resumed.parameters(), full.parameters(), strict=True):
        assert torch.equal(a, b)


def test_nan_loss_stops_before_the_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged) as caught:
        _engine(ToyMethod(nan_at=("b", 3)), tmp_path).run()
    message = str(caught.value)
    assert message.startswith("loss became nan at b epoch 3; lower --b-lr (now 0.05) and train again; ")
    assert "best.pt keeps " in message
    last = Checkpoint.load(tmp_path / "last.pt")
    assert (last.phase, last.step) == ("b", 2)  # the NaN weights were never saved
    assert all(torch.isfinite(t).all() for t in last.model.values())
    assert max(r["episode"] for r in _records(tmp_path) if r["phase"] == "b") == 2


def test_nan_before_any_validation_says_no_best(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"at a episode 2; .*no best\.pt yet"):
        _engine(ToyMethod(nan_at=("a", 2)), tmp_path).run()
    assert not (tmp_path / "best.pt").exists() and not (tmp_path / "last.pt").exists()


def test_no_steps_still_writes_best(tmp_path: Path) -> None:
    method = ToyMethod()
    method.phases = []
    _engine(method, tmp_path).run()
    best = Checkpoint.load(tmp_path / "best.pt")
    assert (best.phase, best.step, best.best_val) == ("none", 0, -1.0)


def test_registry_covers_every_method() -> None:
    assert set(METHOD_BUILDERS) == set(METHODS)


class _Log(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_in_a_log_is_a_few_lines_per_phase() -> None:
    stream = _Log()
    progress = TrainProgress(stream=stream)
    progress.start_phase("ret", 1000, 0, "episodes")
    for step in range(1000):
        progress.update(1)
        if step == 500:
            progress.note = "loss 0.500 acc 0.750"
    progress.close()
    lines = stream.getvalue().splitlines()
    assert 9 <= len(lines) <= 11  # one per tenth (at most), and the final state
    assert lines[-1].startswith("rfmml-train ret 1000/1000 episodes (100%)")
    assert lines[-1].endswith("loss 0.500 acc 0.750")
    silent = _Log()
    quiet = TrainProgress(enabled=False, stream=silent)
    quiet.start_phase("acf", 10, 0, "episodes")
    quiet.update(10)
    quiet.close()
    assert silent.getvalue() == ""


def test_progress_rate_counts_only_this_sessions_items(monkeypatch: pytest.MonkeyPatch) -> None:
    progress = TrainProgress(stream=_Log())
    progress.start_phase("acf", 100, 60, "episodes")  # resumed at 60
    progress.update(10)
    monkeypatch.setattr(type(progress), "elapsed", property(lambda self: 2.0))
    assert progress.rate == pytest.approx(5.0)
