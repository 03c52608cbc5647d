"""Training recovery (issue 9): one process per run folder, kill -9 and torn logs, full disks, NaN
losses, stale temp files. Tiny synthetic runs (conv4 at 16 px, a few dozen episodes)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rfmml.runtime.atomic_files import atomic_write
from rfmml.trainer import checkpoint as checkpoint_module
from rfmml.trainer import episodic
from rfmml.trainer.checkpoint import Checkpoint
from rfmml.trainer.cli import main

TINY = ["--image-size", "16", "--ret-episodes", "20", "--acf-episodes", "10", "--val-every", "5"]
TINY += ["--log-every", "1", "--no-progress", "--svm-c", "1", "--no-cache"]
TRAIN = "import sys\nfrom rfmml.trainer.cli import main\nsys.exit(main(sys.argv[1:]))\n"
HOLD_LOCK = (
    "import sys, time\n"
    "from rfmml.trainer.run_folder import RunFolder\n"
    "with RunFolder(sys.argv[1], say=lambda _: None):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(120)\n"
)


def _metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _eval(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted tiny run every recovery is compared with."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


def _interrupted_run(out: Path, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """The tiny run, stopped by Ctrl-C right after its ``after``-th checkpoint."""
    from rfmml.trainer import engine

    original = engine.Engine.validate_and_save
    calls = {"n": 0}

    def interrupting(*args, **kwargs):
        original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == after:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(engine.Engine, "validate_and_save", interrupting)
        assert main([*TINY, "--out", str(out)]) == 130


@pytest.fixture()
def lock_holder(tmp_path: Path):
    """Start a second process that holds the lock of tmp_path/run; yield (run folder, its pid)."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield run, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_writer_is_refused_and_writes_nothing(lock_holder, capsys) -> None:
    run, proc = lock_holder
    assert main([*TINY, "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rfmml-train: error: {run} is in use by another rfmml-train (pid {proc.pid})"
    assert [p.name for p in run.iterdir()] == [".lock"]  # the holder's lock file, nothing else
    proc.send_signal(signal.SIGKILL)  # a crashed holder: its lock file stays, its lock dies with it
    proc.wait()
    assert (run / ".lock").exists()
    assert main([*TINY, "--out", str(run)]) == 0
    assert (run / "eval.json").exists()


def test_resume_of_a_folder_in_use_is_refused(tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    _interrupted_run(run, monkeypatch, after=2)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["--resume", str(run), "--no-progress"]) == 2
        assert f"is in use by another rfmml-train (pid {proc.pid})" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    after = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert {k: v for k, v in after.items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_bad_input_after_the_lock_leaves_no_folder(tmp_path, capsys) -> None:
    out = tmp_path / "new" / "run"
    assert main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("rfmml-train: error: ")
    assert not (tmp_path / "new").exists()  # the folders the run made are gone with its lock file


def test_kill_9_mid_run_then_resume_equals_uninterrupted(full_run, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN, *TINY, "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (run / "eval.json").exists():
        pytest.skip("the run finished before the kill (machine too fast for this test)")
    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert _metrics(run) == _metrics(full_run)
    assert _eval(run) == _eval(full_run)


def test_torn_metrics_line_does_not_block_resume(full_run, tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    _interrupted_run(run, monkeypatch, after=2)
    with open(run / "metrics.jsonl", "a") as handle:  # power loss in mid-append
        handle.write('{"kind": "episode", "phase": "ret", "epis')
    capsys.readouterr()
    assert main(["--resume", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"rfmml-train: warning: {run / 'metrics.jsonl'}: dropped an incomplete last line" in err
    assert _metrics(run) == _metrics(full_run)
    assert _eval(run) == _eval(full_run)


def test_damaged_metrics_line_is_one_line_error(tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    _interrupted_run(run, monkeypatch, after=1)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(["garbage", *lines]) + "\n")
    capsys.readouterr()
    assert main(["--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rfmml-train: error: {run / 'metrics.jsonl'}:1: not a metrics record")


def test_full_disk_while_writing_last_pt(full_run, tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    real_write = checkpoint_module.atomic_write_bytes
    writes = {"last": 0}

    def write_bytes(path, data, tag):
        if Path(path).name == "last.pt":
            writes["last"] += 1
            if writes["last"] == 3:  # the disk fills up half-way through the third last.pt

                def half(tmp):
                    Path(tmp).write_bytes(data[: len(data) // 2])
                    raise OSError(errno.ENOSPC, "No space left on device")

                return atomic_write(path, half, tag=tag)
        return real_write(path, data, tag=tag)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", write_bytes)
    assert main([*TINY, "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rfmml-train: error: no space left on device while writing {run / 'last.pt'}"
    kept = Checkpoint.load(run / "last.pt")  # the previous checkpoint, whole
    assert (kept.phase, kept.step) == ("ret", 10)
    assert not list(run.glob(".*.tmp"))
    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", real_write)
    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert _metrics(run) == _metrics(full_run)


def test_full_disk_while_taking_the_lock_is_one_line_and_leaves_no_folder(
    tmp_path, monkeypatch, capsys
) -> None:
    from rfmml.trainer import run_folder

    def full_disk(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder.os, "pwrite", full_disk)
    run = tmp_path / "new" / "run"
    assert main([*TINY, "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"rfmml-train: error: no space left on device while writing {run / '.lock'}"
    assert list(tmp_path.iterdir()) == []


def test_nan_loss_stops_with_one_line_and_keeps_best(tmp_path, monkeypatch, capsys) -> None:
    real_loss = episodic.episode_loss
    calls = {"n": 0}

    def loss_going_nan(*args, **kwargs):
        loss, acc = real_loss(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] >= 7 else loss), acc

    monkeypatch.setattr(episodic, "episode_loss", loss_going_nan)
    run = tmp_path / "run"
    assert main([*TINY, "--ret-lr", "0.001", "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rfmml-train: error: loss became nan at ret episode 7; lower --ret-lr (now 0.001)")
    assert "best.pt keeps ret episode 5" in err and "\n" not in err
    best = Checkpoint.load(run / "best.pt")
    assert (best.phase, best.step) == ("ret", 5)
    assert all(torch.isfinite(t).all() for t in best.model.values() if t.is_floating_point())
    assert not (run / "eval.json").exists()
    records = _metrics(run)
    assert max(r["episode"] for r in records) == 6  # nothing logged from the NaN on


def test_stale_temp_files_are_removed_on_resume(full_run, tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    _interrupted_run(run, monkeypatch, after=2)
    dead, alive = _dead_pid(), os.getppid()
    stale = [run / f".last.pt.rfmml.{dead}-4.tmp", run / f".best.pt.rfmml-train.{dead}-2.tmp"]
    stale.append(run / f".eval.json.rfmml.{os.getpid()}-9.tmp")  # this pid, from before (a reused pid)
    foreign = [run / f".model.onnx.rfmml-export.{dead}-1.tmp", run / "notes.txt"]
    foreign.append(run / f".last.pt.rfmml-train.{alive}-1.tmp")  # a live process's: never touched
    for path in stale + foreign:
        path.write_bytes(b"left by a kill")
    os.utime(stale[-1], (time.time() - 60,) * 2)
    capsys.readouterr()
    assert main(["--resume", str(run), "--no-progress"]) == 0
    assert "removed 3 temporary file(s)" in capsys.readouterr().out
    assert not any(p.exists() for p in stale) and all(p.exists() for p in foreign)
    assert _metrics(run) == _metrics(full_run)


def test_checkpoint_layout_round_trip_and_old_format(full_run, tmp_path) -> None:
    state = torch.load(full_run / "last.pt", map_location="cpu", weights_only=True)
    documented = {
        "format", "code_version", "backbone", "config", "model", "method_modules", "optimizer", "phase",
        "phase_index", "unit", "step", "rng", "rng_device", "best_val", "elapsed",
    }  # fmt: skip
    assert set(state) == documented
    assert (state["phase"], state["unit"], state["step"], state["method_modules"]) == (
        "acf",
        "episode",
        10,
        {},
    )
    assert Checkpoint.from_state(state).to_state().keys() == state.keys()
    best = torch.load(full_run / "best.pt", map_location="cpu", weights_only=True)
    assert set(best) == documented and best["optimizer"] is None
    old = dict(state, format=1)
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(checkpoint_module.CheckpointError, match="retrain or use that version"):
        Checkpoint.load(tmp_path / "old.pt")


def test_lock_file_names_the_holder(tmp_path) -> None:
    from rfmml.trainer.run_folder import RunFolder

    with RunFolder(tmp_path / "run", say=lambda _: None) as folder:
        assert folder.lock_path.read_text() == f"{os.getpid()}\n"
        (tmp_path / "run" / "config.json").write_text("{}")
    assert (tmp_path / "run" / ".lock").exists()  # kept: removing it could let two claimers in


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": torch.tensor([2, 2])}, "checkpoint format ? is not 2"),
        ({"format": True}, "checkpoint format ? is not 2"),
        ({"step": "10"}, "step is not as documented"),
        ({"unit": "batch"}, "unit is not as documented"),
        ({"rng": {"gen": [1, 2]}}, "rng is not as documented"),
        ({"model": None}, "model is not as documented"),
        ({"best_val": "0.5"}, "best_val is not as documented"),
    ],
)
def test_tampered_checkpoint_fields_are_one_line_errors(full_run, tmp_path, change, message) -> None:
    state = torch.load(full_run / "last.pt", map_location="cpu", weights_only=True)
    torch.save({**state, **change}, tmp_path / "last.pt")
    with pytest.raises(checkpoint_module.CheckpointError, match=re.escape(message)):
        Checkpoint.load(tmp_path / "last.pt")


def test_resume_from_a_checkpoint_of_another_shape_is_one_line(full_run, tmp_path, capsys) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(full_run, run)
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    state["optimizer"] = {"state": {}, "param_groups": [{"params": [0]}]}  # groups of another model
    state["step"] = 5  # mid-ACF, so the optimizer state is loaded
    torch.save(state, run / "last.pt")
    capsys.readouterr()
    assert main(["--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rfmml-train: error: {run / 'last.pt'}: optimizer state does not fit this run")
    assert "\n" not in err


@pytest.mark.parametrize("junk", ["\x0b", "\x0c", "\x1c", "\x85", "\r", '{"kind": "epi'])
def test_a_torn_tail_with_any_bytes_is_one_dropped_line(tmp_path, junk) -> None:
    from rfmml.trainer.metrics_log import MetricsLog

    path = tmp_path / "metrics.jsonl"
    records = [{"kind": "episode", "phase": "ret", "episode": e, "loss": 1.0} for e in (1, 2, 3)]
    complete = "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(complete + '{"kind": "episode", "phase": "ret", "epis' + junk + "ode")
    warnings: list[str] = []
    MetricsLog(path, warnings.append).truncate_after(["ret"], 0, 2)
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in records[:2])
    assert len(warnings) == 1 and "incomplete last line" in warnings[0]
