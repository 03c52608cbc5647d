"""rfmml-train under torchrun (issue 13): 2 gloo processes on localhost, spawned with torch's launcher,
on a tiny real EuroSAT subset (conv4 at 16 px): the same weights on both ranks, each log line written
once, a kill then --resume equal to the uninterrupted run, another process count refused, a dead
rank ends the job; and the gradient average equals DDP's."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from rfmml.trainer.checkpoint import Checkpoint, ranks_rng
from rfmml.trainer.cli import main
from rfmml.trainer.data import load_part
from rfmml.trainer.distributed import SINGLE, World, world_from_env
from rfmml.trainer.engine import due, phase_end
from rfmml.trainer.evaluate import evaluate_heads
from rfmml.trainer.method_interface import Phase, TrainData, TrainSetup
from rfmml.trainer.methods import build_method
from rfmml.trainer.run import load_run

TRAIN_SCRIPT = Path(sys.executable).parent / "rfmml-train"
SUBSET = [
    "--backbone", "conv4", "--no-pretrained", "--tune", "all", "--image-size", "16",
    "--train-per-class", "20", "--val-per-class", "5", "--test-per-class", "10",
    "--minority-classes", "3", "--minority-shots", "4", "--ret-episodes", "60", "--acf-episodes", "10",
    "--ret-lr", "1e-3", "--acf-lr", "2e-4", "--val-every", "10", "--log-every", "2", "--svm-c", "1",
    "--no-progress",
]  # fmt: skip
DIGEST = re.compile(r"rank (\d) of 2: trained state sha256 ([0-9a-f]{64})")


@dataclass
class Job:
    """A launcher (torch.distributed.run) started in its own session, its output in ``log``."""

    process: subprocess.Popen
    log: Path

    def finish(self, timeout: float = 150) -> tuple[int, str]:
        """Wait for the launcher, kill whatever is left of its session; (exit code, output)."""
        try:
            code = self.process.wait(timeout)
        finally:
            for pid in [self.process.pid, *self.workers()]:
                with suppress(ProcessLookupError):  # ended meanwhile
                    os.kill(pid, signal.SIGKILL)
        return code, self.log.read_text()

    def workers(self) -> list[int]:
        """The launcher's live (not zombie) descendants: its workers (torchrun puts each in a session
        of its own)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with suppress(OSError):  # ended meanwhile
                    state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
                    if state != "Z":
                        parents[int(entry.name)] = int(ppid)
        found, frontier = [], [self.process.pid]
        while frontier:
            children = [pid for pid, ppid in parents.items() if ppid in frontier]
            found += children
            frontier = children
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], log: Path, script: Path = TRAIN_SCRIPT) -> Job:
    """``python -m torch.distributed.run --nproc-per-node 2 SCRIPT ARGS`` on localhost."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-port", str(free_port()), str(script), *args]
    env = {**os.environ, "RFMML_DDP_DIGEST": "1", "RFMML_DDP_TIMEOUT": "60"}
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    return Job(process, log)


def wait_for(path: Path, job: Job, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert job.process.poll() is None, job.log.read_text()[-2000:]
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory, eurosat_root: Path) -> tuple[Path, str]:
    """An uninterrupted 2-process run: (its folder, the launcher's output)."""
    base = tmp_path_factory.mktemp("ddp")
    out = base / "full"
    flags = ["--data", str(eurosat_root), *SUBSET, "--cache-dir", str(base / "cache")]
    code, output = launch([*flags, "--out", str(out)], base / "full.log").finish()
    assert code == 0, output[-3000:]
    return out, output


def test_two_ranks_end_with_the_same_weights_and_log_once(full_run: tuple[Path, str]) -> None:
    run, output = full_run
    digests = dict(DIGEST.findall(output))
    assert sorted(digests) == ["0", "1"] and digests["0"] == digests["1"]
    rows = metrics(run)
    episodes = [(r["phase"], r["episode"]) for r in rows if r["kind"] == "episode"]
    vals = [(r["phase"], r["episode"]) for r in rows if r["kind"] == "val"]
    # 2 episodes per optimizer step: the global count goes 2, 4, ...; a record every 2, a validation
    # at the step that reaches each multiple of 10 (and at the phase's end)
    assert episodes == [("ret", e) for e in range(2, 61, 2)] + [("acf", e) for e in range(2, 11, 2)]
    assert vals == [("ret", e) for e in (10, 20, 30, 40, 50, 60)] + [("acf", 10)]
    assert output.count("test accuracy") == 1  # rank 0 alone evaluates and prints
    last = Checkpoint.load(run / "last.pt")
    assert (last.world_size, last.phase, last.step) == (2, "acf", 10)
    assert set(last.rank_rng(1)) == set(last.rank_rng(0)) == {"shape_gen", "gen"}
    assert not torch.equal(last.rank_rng(1)["gen"], last.rank_rng(0)["gen"])  # episodes of its own
    eval_json = json.loads((run / "eval.json").read_text())
    assert eval_json["checkpoint"]["file"] == "best.pt" and 0.0 <= eval_json["proto"]["overall"] <= 1.0


def test_validation_and_evaluation_equal_a_single_process_on_the_same_weights(
    full_run: tuple[Path, str],
) -> None:
    run, _ = full_run
    loaded = load_run(run)  # best.pt, in this (single) process
    config, split = loaded.config, loaded.split
    parts = {p: load_part(split, p, config.image_size, config.cache_dir) for p in ("train", "val", "test")}
    data = TrainData(*parts["train"], *parts["val"], split.classes, split.majority)
    setup = TrainSetup(config, split, loaded.model, data, torch.device("cpu"), parts)
    report = build_method(setup).validate()
    best = Checkpoint.load(run / "best.pt")
    logged = [
        r
        for r in metrics(run)
        if r["kind"] == "val" and (r["phase"], r["episode"]) == (best.phase, best.step)
    ]
    assert [r["val_overall"] for r in logged] == [report["overall"]] == [best.best_val]
    result = evaluate_heads(loaded.model, parts, split.classes, split.majority, config, torch.device("cpu"))
    eval_json = json.loads((run / "eval.json").read_text())
    assert json.loads(json.dumps(result)) == {k: v for k, v in eval_json.items() if k != "checkpoint"}


def killed_and_resumed(flags: list[str], out: Path, tmp_path: Path) -> Checkpoint:
    """Start a 2-process run into ``out``, kill the launcher once last.pt exists (torchrun stops
    its workers), then --resume it to the end; the checkpoint it was stopped at."""
    job = launch([*flags, "--out", str(out)], tmp_path / "killed.log")
    wait_for(out / "last.pt", job)
    job.process.send_signal(signal.SIGTERM)
    code, output = job.finish(60)
    assert code != 0 and not (out / "eval.json").exists(), output[-2000:]
    stopped = Checkpoint.load(out / "last.pt")
    code, output = launch(["--resume", str(out), "--no-progress"], tmp_path / "resumed.log").finish()
    assert code == 0, output[-3000:]
    assert f"resuming {out} at" in output
    return stopped


def test_resume_after_killing_the_launcher_equals_the_full_run(
    full_run: tuple[Path, str], tmp_path: Path, eurosat_root: Path
) -> None:
    full, _ = full_run
    out = tmp_path / "run"
    flags = ["--data", str(eurosat_root), *SUBSET, "--cache-dir", str(full.parent / "cache")]
    stopped = killed_and_resumed(flags, out, tmp_path)
    assert (stopped.phase, stopped.step) != ("acf", 10)  # stopped before the end
    assert metrics(out) == metrics(full)
    assert json.loads((out / "eval.json").read_text()) == json.loads((full / "eval.json").read_text())


@pytest.mark.slow
def test_cross_entropy_epochs_are_sharded_and_resume(tmp_path: Path, eurosat_root: Path) -> None:
    """--method plain --augment on 2 processes: one record per epoch over all 152 images, each rank
    its own augmentation stream (in last.pt), and a kill + --resume equal to the full run."""
    flags = ["--data", str(eurosat_root), *SUBSET, "--cache-dir", str(tmp_path / "cache")]
    flags += ["--method", "plain", "--augment", "--epochs", "30", "--lr", "1e-3", "--lr-step", "10"]
    flags += ["--ce-batch", "16"]
    code, output = launch([*flags, "--out", str(tmp_path / "full")], tmp_path / "full.log").finish()
    assert code == 0, output[-3000:]
    full = metrics(tmp_path / "full")
    assert [(r["kind"], r["episode"]) for r in full] == [
        (k, e) for e in range(1, 31) for k in ("epoch", "val")
    ]
    last = Checkpoint.load(tmp_path / "full" / "last.pt")
    assert last.world_size == 2 and set(last.rank_rng(1)) == {"gen", "augment_gen"}
    assert torch.equal(last.rank_rng(0)["gen"], last.rank_rng(1)["gen"])  # one epoch order
    assert not torch.equal(last.rank_rng(0)["augment_gen"], last.rank_rng(1)["augment_gen"])
    stopped = killed_and_resumed(flags, tmp_path / "run", tmp_path)
    assert stopped.step < 30
    assert metrics(tmp_path / "run") == full
    assert (tmp_path / "run" / "eval.json").read_bytes() == (tmp_path / "full" / "eval.json").read_bytes()


def test_resume_with_another_process_count_is_refused(
    full_run: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(full_run[0], run)
    before = (run / "metrics.jsonl").read_bytes()
    assert main(["--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "trained by 2 process(es), this resume has 1" in err
    assert "torchrun with 2 processes" in err
    assert (run / "metrics.jsonl").read_bytes() == before
    assert not torch.distributed.is_initialized()  # a single process never starts a process group


@pytest.mark.slow
def test_a_dead_rank_ends_the_job(tmp_path: Path, eurosat_root: Path) -> None:
    out = tmp_path / "run"
    flags = ["--data", str(eurosat_root), *SUBSET, "--cache-dir", str(tmp_path / "cache")]
    job = launch([*flags, "--out", str(out)], tmp_path / "crash.log")
    wait_for(out / "last.pt", job)
    workers = job.workers()
    assert len(workers) == 2
    started = time.monotonic()
    os.kill(max(workers), signal.SIGKILL)  # one rank dies in mid-training
    code, output = job.finish(90)
    assert code != 0 and time.monotonic() - started < 60, output[-2000:]
    assert not (out / "eval.json").exists()


DDP_CHECK = """
import gc
import os
import sys
import weakref
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from rfmml.trainer.distributed import joined, world_from_env


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(5, 3)
        self.b = torch.nn.Linear(5, 3)   # used on rank 0 only
        self.c = torch.nn.Linear(5, 3)   # used on no rank

    def forward(self, x, rank):
        y = self.a(x)
        return y + self.b(x) if rank == 0 else y


with joined(world_from_env(), torch.device("cpu")) as world:
    group = weakref.ref(dist.group.WORLD)
    torch.optim.SGD(Net().parameters(), lr=0.1)  # the first optimizer imports torch._dynamo
    torch.manual_seed(0)
    ours = Net()
    theirs = Net()
    theirs.load_state_dict(ours.state_dict())
    ddp = DistributedDataParallel(theirs, find_unused_parameters=True)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(10 + world.rank))
    ours(x, world.rank).square().sum().backward()
    world.average_gradients(list(ours.parameters()))
    ddp(x, world.rank).square().sum().backward()
    lines = []  # written at once: the two ranks share the output file
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        same = (p.grad is None and q.grad is None) or (
            p.grad is not None and q.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-6)
        )
        lines.append(f"rank {world.rank} {name} {'same' if same else 'DIFFERS'} "
                     f"{'none' if p.grad is None else float(p.grad.abs().sum())}")
    del ddp  # holds the group
    gc.collect()
lines.append(f"rank {world.rank} group {'released' if group() is None else 'LEAKED'}")
os.write(1, ("\\n".join(lines) + "\\n").encode())
"""


def test_gradient_average_equals_ddp(tmp_path: Path) -> None:
    script = tmp_path / "ddp_check.py"
    script.write_text(DDP_CHECK)
    code, output = launch([], tmp_path / "ddp.log", script).finish()
    assert code == 0, output[-3000:]
    lines = re.findall(r"rank (\d) (\S+) (same|DIFFERS) (\S+)", output)
    assert len(lines) == 12 and all(verdict == "same" for _, _, verdict, _ in lines), lines
    unused = {(rank, value) for rank, name, _, value in lines if name.startswith("c.")}
    assert unused == {("0", "none"), ("1", "none")}  # no gradient on any rank: none after the average
    used_on_one = [float(value) for _, name, _, value in lines if name.startswith("b.")]
    assert len(used_on_one) == 4 and min(used_on_one) > 0  # counted as zero on rank 1, then averaged
    # the group and its gloo threads end with the block (a leaked one raced the interpreter's exit)
    assert sorted(re.findall(r"rank (\d) group (\w+)", output)) == [("0", "released"), ("1", "released")]


def test_world_from_the_environment_and_the_rank_seed() -> None:
    assert world_from_env({}) is SINGLE
    assert world_from_env({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"}) is SINGLE
    world = world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.is_writer) == (3, 4, 1, False)
    assert (SINGLE.rank_seed(7), world.rank_seed(7)) == (7, 3007)
    assert (world.stride("episode"), world.stride("epoch")) == (4, 1)
    with pytest.raises(ValueError, match="launch with torchrun"):
        world_from_env({"WORLD_SIZE": "2", "RANK": "2"})
    # an epoch of 10 indices over 4 ranks: padded to 12 by its start, every 4th from the rank
    order = torch.arange(10) * 10
    shards = [World(r, 4).shard(order) for r in range(4)]
    assert [s.tolist() for s in shards] == [[0, 40, 80], [10, 50, 90], [20, 60, 0], [30, 70, 10]]


def test_ranks_generators_in_one_checkpoint_dict() -> None:
    states = [{"gen": torch.tensor([r], dtype=torch.uint8)} for r in range(3)]
    rng = ranks_rng(states)
    assert sorted(rng) == ["gen", "rank1/gen", "rank2/gen"]
    checkpoint = Checkpoint("conv4", {}, {}, "ret", 0, "episode", 2, rng)
    assert checkpoint.world_size == 3
    assert [int(checkpoint.rank_rng(r)["gen"]) for r in range(3)] == [0, 1, 2]
    assert Checkpoint("conv4", {}, {}, "ret", 0, "episode", 2, ranks_rng(states[:1])).world_size == 1


def test_global_step_counts_and_when_records_are_due() -> None:
    ret = Phase("ret", 25, "episode", 1e-3, "--ret-lr", 4, 10)
    assert (phase_end(ret, 1), phase_end(ret, 2), phase_end(ret, 3)) == (25, 26, 27)
    counts = range(3, 28, 3)  # 3 processes: 3, 6, ..., 27 episodes
    assert [c for c in counts if due(c, 3, ret.val_every)] == [12, 21]  # first steps past 10 and 20
    assert [c for c in range(1, 26) if due(c, 1, 10)] == [10, 20]  # one process: every 10th
