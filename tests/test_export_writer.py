"""Export's pair writer after a kill -9 (issue 9 item 8): the previous pair survives, and the next
export writing to that folder removes the temporaries the killed one left, and only those."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rfmml.export.writer import TAG, write_pairs
from rfmml.runtime.artifact import Head, load_head
from rfmml.runtime.atomic_files import host_token


def tiny_head(tag: str = "") -> Head:
    """A valid two-class head (also built by the process that gets killed, which imports this)."""
    rng = np.random.default_rng(0)
    return Head(
        class_names=("a", "b"),
        input_size=(8, 8),
        distance="euclidean",
        prototypes=rng.normal(size=(2, 4)).astype(np.float32),
        majority=np.array([True, False]),
        train_counts=np.array([10, 2]),
        metadata={"tag": tag},
    )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_export_removes_only_stale_temporaries_of_exports(tmp_path: Path) -> None:
    dead, alive, me = _dead_pid(), os.getppid(), os.getpid()
    started = time.time()
    stale = [
        f".model.onnx.{TAG}.{dead}-1.tmp",
        f".model.npz.{TAG}.{dead}-3.tmp",
        f"..model.npz.{TAG}.{dead}-3.tmp.rfmml.{dead}-4.tmp",  # save_head's temporary inside ours
        f".old.onnx.{TAG}.{me}-1.tmp",  # this pid, but from before this export began (a reused pid)
    ]
    kept = [
        f".model.onnx.{TAG}.{alive}-1.tmp",  # a live export's
        f".model.onnx.rfmml-infer.{dead}-1.tmp",  # another command's
        f".model.onnx.{dead}.partial",  # not the pattern
        "model.onnx",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    os.utime(tmp_path / f".old.onnx.{TAG}.{me}-1.tmp", (started - 60, started - 60))
    write_pairs([(tmp_path / "new.onnx", b"new model bytes", tiny_head())], started=started)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "new.onnx", "new.npz"])


KILLED_WRITER = """
import sys, time
from pathlib import Path
import rfmml.export.writer as writer
sys.path.insert(0, sys.argv[2])
from test_export_writer import tiny_head

def hang(path, head):  # the head's bytes half written, then the process is killed
    Path(path).write_bytes(b"half a head")
    print("staged", flush=True)
    time.sleep(600)

writer.save_head = hang
writer.write_pairs([(Path(sys.argv[1]) / "model.onnx", b"new model bytes", tiny_head("new"))], force=True)
"""


def test_kill_9_leaves_the_old_pair_and_the_next_export_cleans_up(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    write_pairs([(model, b"old model bytes", tiny_head("old"))])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert victim.stdout.readline().strip() == "staged"
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in before)
    assert [re.sub(r"-\d+\.tmp$", "", name) for name in leftovers] == [
        f".model.npz.{TAG}.{host_token()}.{victim.pid}",
        f".model.onnx.{TAG}.{host_token()}.{victim.pid}",
    ]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.name in before} == before  # intact

    (head,) = write_pairs([(model, b"newer model bytes", tiny_head("newer"))], force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "model.onnx"]
    assert model.read_bytes() == b"newer model bytes"
    assert load_head(model.with_suffix(".npz")).metadata["tag"] == "newer" == head.metadata["tag"]
    np.testing.assert_array_equal(head.prototypes, tiny_head().prototypes)


def test_a_failed_write_removes_the_folders_it_created(tmp_path: Path, monkeypatch) -> None:
    import rfmml.export.writer as writer

    def full_disk(path, head):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(writer, "save_head", full_disk)
    (tmp_path / "kept").mkdir()
    for target in (tmp_path / "a" / "b" / "model.onnx", tmp_path / "kept" / "model.onnx"):
        with pytest.raises(OSError, match="No space left") as raised:
            write_pairs([(target, b"model bytes", tiny_head())])
        assert raised.value.filename == str(target.with_suffix(".npz"))  # the file, not our temporary
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept"]  # its own folder stays, empty
