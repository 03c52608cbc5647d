"""The training engine: one loop for every method (episodic and cross-entropy).

A method (see ``rfmml.trainer.method_interface.Method``) supplies its phases and its step: one
episode for the episodic methods, one epoch for the cross-entropy ones (``Phase.unit`` says which).
The engine owns everything else: the optimizer per phase, metrics.jsonl, validation, ``best.pt`` /
``last.pt`` (one :class:`Checkpoint` layout), resume, progress, and the check for a loss that
became NaN or infinite.

Per phase, for step s = 1 .. phase.steps: run the step; every ``log_every`` steps (and at the phase's
last) write its metrics record; every ``val_every`` steps (and at the last) validate, keep best.pt on
a new best, and write last.pt. A resume restarts after last.pt's step with the same optimizer and
generator states, so it equals an uninterrupted run.

Under torchrun (``world``, rfmml.trainer.distributed) every rank runs this loop in step: an optimizer
step averages the gradients of all ranks, so on an episode phase it consumes N episodes (one per rank)
and the step counter (metrics' "episode", checkpoints' ``step``) counts global episodes: N, 2N, ...,
up to the phase's budget rounded up to a multiple of N. Records are written, and validation and
checkpoints happen, at the first step that reaches each multiple of ``log_every`` / ``val_every``.
An epoch is one step whatever N (each rank trains on its shard). Rank 0 alone writes; every rank
validates the same weights (the same numbers as a single process) and keeps the same position.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rfmml.runtime.errors import CheckpointError, InputError
from rfmml.trainer.checkpoint import Checkpoint, ranks_rng
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.distributed import SINGLE, World
from rfmml.trainer.method_interface import Method, Phase, StepResult
from rfmml.trainer.metrics_log import MetricsLog
from rfmml.trainer.train_progress import TrainProgress


class TrainingDiverged(InputError):
    """The loss became NaN or infinite (too high a learning rate, or bad data)."""


class DeviceOutOfMemory(InputError):
    """The training device ran out of memory; the message names the size and the flag that lowers it."""


@dataclass
class Position:
    """Where training stands: ``step`` steps of phase ``phase_index`` done; the best validation
    overall accuracy so far (-1.0: none); seconds of training so far."""

    phase_index: int = 0
    step: int = 0
    best_val: float = -1.0
    elapsed: float = 0.0


class FiniteWatch:
    """Remembers the first step whose loss was not finite, on the device (no sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.step = torch.zeros((), dtype=torch.int64, device=device)  # 0: all finite so far
        self.loss = torch.zeros((), device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        first = (self.step == 0) & ~torch.isfinite(loss)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss.float(), self.loss)

    def first(self, world: World = SINGLE) -> tuple[int, float] | None:
        """(step, loss) of the first non-finite loss on any rank, or None (syncs with the device)."""
        # on the CPU first: float64 is not on every device (MPS)
        pairs = world.all_gather(torch.stack([self.step.cpu().double(), self.loss.cpu().double()])).tolist()
        bad = [(int(step), loss) for step, loss in pairs if step]
        return min(bad) if bad else None


def due(count: int, stride: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in (count - stride, count]: the step that reached it."""
    return count // every > (count - stride) // every


def phase_end(phase: Phase, stride: int) -> int:
    """The step count at a phase's end: its length rounded up to a multiple of ``stride``."""
    return -(-phase.steps // stride) * stride


class Engine:
    """Runs a :class:`Method` in ``run_dir``: metrics.jsonl, best.pt / last.pt, resume, progress."""

    def __init__(
        self,
        method: Method,
        config: TrainConfig,
        run_dir: Path,
        device: torch.device,
        warn: Callable[[str], None],
        world: World = SINGLE,
    ) -> None:
        self.method = method
        self.world = world
        self.config = config
        self.run_dir = run_dir
        self.log = MetricsLog(run_dir / "metrics.jsonl", warn)
        self.warn = warn
        self.progress = TrainProgress(enabled=config.progress)
        self.watch = FiniteWatch(device)
        self.device = device
        self.start_time = time.perf_counter()
        self.best_at = ""  # "ret episode 20 (val 0.812)": where best.pt's weights come from

    def run(self, resume: Checkpoint | None = None) -> Position:
        """Train from the start, or from ``resume`` (last.pt); return the final position."""
        phases = self.method.phases
        position, optimizer_state = (self.restore(resume), resume.optimizer) if resume else (Position(), None)
        if self.world.is_writer:
            self.log.truncate_after([p.name for p in phases], position.phase_index, position.step)
        self.world.broadcast_state(self.modules())  # as DDP starts: every rank from rank 0's weights
        self.start_time = time.perf_counter() - position.elapsed
        try:
            for index in range(position.phase_index, len(phases)):
                if index > position.phase_index:
                    position.phase_index, position.step = index, 0
                self.run_phase(position, optimizer_state)
                optimizer_state = None
        except BaseException:  # Ctrl-C, a full disk, a NaN: the error goes on a line of its own
            self.progress.abandon()
            raise
        if self.world.is_writer and not (self.run_dir / "best.pt").exists():  # no step: initial weights
            self.checkpoint(None, position, None).save(self.run_dir / "best.pt")
        return position

    def run_phase(self, position: Position, optimizer_state: dict | None) -> None:
        """Run phase ``position.phase_index`` from the step after ``position.step`` to its end."""
        phase = self.method.phases[position.phase_index]
        stride = self.world.stride(phase.unit)
        optimizer = torch.optim.Adam(self.method.parameters(), lr=phase.lr)
        self.world.average_gradients_on_step(optimizer)
        if optimizer_state is not None:
            try:
                optimizer.load_state_dict(optimizer_state)
            except (ValueError, KeyError, TypeError, RuntimeError) as error:
                raise CheckpointError(
                    f"{self.run_dir / 'last.pt'}: optimizer state does not fit this run ({error})"
                ) from None
        total = phase.steps * phase.ticks
        self.progress.start_phase(phase.name, total, position.step * phase.ticks, phase.tick_unit)
        tick = self.progress.update if stride == 1 else lambda n: self.progress.update(n * stride)
        end = phase_end(phase, stride)
        if stride > 1 and end != phase.steps and self.world.is_writer and position.step == 0:
            self.warn(
                f"{phase.name}: {phase.steps} episodes is not a multiple of {stride} processes; "
                f"training {end} ({end // stride} steps of {stride})"
            )
        for step in range(position.step + stride, end + 1, stride):
            with self.out_of_memory(phase, step):
                result = self.method.step(position.phase_index, step, optimizer, tick)
            self.watch.observe(result.loss, step)
            position.step = step
            last = step == end
            if due(step, stride, phase.log_every) or last:
                self.check_finite(phase)
                self.write_record(phase, position, result)
            if due(step, stride, phase.val_every) or last:
                self.check_finite(phase)
                self.validate_and_save(phase, position, optimizer)
        self.progress.close()

    @contextmanager
    def out_of_memory(self, phase: Phase, step: int, validating: bool = False) -> Iterator[None]:
        """Turn the device's out-of-memory error into one line: where, how big, the flag to lower."""
        try:
            yield
        except torch.OutOfMemoryError:
            if validating:
                note = f"embedding batch {self.config.batch_size} images; lower --batch-size"
            else:
                memory_note = getattr(self.method, "memory_note", None)
                note = memory_note(self.method.phases.index(phase)) if memory_note else "lower the batch size"
            where = "validating after" if validating else "at"
            raise DeviceOutOfMemory(
                f"{self.device.type} out of memory {where} {phase.name} {phase.unit} {step} ({note}); "
                "resume with --resume after lowering it"
            ) from None

    def write_record(self, phase: Phase, position: Position, result: StepResult) -> None:
        position.elapsed = time.perf_counter() - self.start_time
        if self.world.is_writer:  # under torchrun: rank 0's step (its episode's K, N, loss, accuracy)
            self.log.write({**result.record(), "seconds": round(position.elapsed, 3)})
        self.progress.note = self.method.progress_note(position.phase_index, position.step)

    def check_finite(self, phase: Phase) -> None:
        """Stop with TrainingDiverged when some loss since the last check was NaN or infinite."""
        bad = self.watch.first(self.world)
        if bad is None:
            return
        if self.best_at:
            kept = f"best.pt keeps {self.best_at}"
        elif (self.run_dir / "best.pt").exists():  # written before a resume
            kept = "best.pt keeps the best weights before the resume"
        else:
            kept = "no best.pt yet (no validation before)"
        raise TrainingDiverged(
            f"loss became {bad[1]} at {phase.name} {phase.unit} {bad[0]}; lower {phase.lr_flag} "
            f"(now {phase.lr:g}) and train again; {kept}"
        )

    def validate_and_save(self, phase: Phase, position: Position, optimizer: torch.optim.Optimizer) -> None:
        """Validate (when there are validation images), keep best.pt on a new best, write last.pt."""
        self.world.broadcast_state(self.modules(), buffers_only=True)  # BatchNorm statistics: rank 0's
        if self.method.has_validation:
            with self.out_of_memory(phase, position.step, validating=True):
                report = self.method.validate()
            if self.world.is_writer:
                self.write_val(phase, position, report)
            better = report["overall"] > position.best_val
            if better:
                position.best_val = report["overall"]
        else:  # no validation images: the latest weights are the best we know
            better = True
        position.elapsed = time.perf_counter() - self.start_time
        rng = ranks_rng(self.world.gather_states(self.method.rng_state()))  # a collective: every rank
        if better:
            if self.world.is_writer:
                self.checkpoint(phase, position, None, rng).save(self.run_dir / "best.pt")
            self.best_at = f"{phase.name} {phase.unit} {position.step} (val {position.best_val:.3f})"
        if self.world.is_writer:
            self.checkpoint(phase, position, optimizer, rng).save(self.run_dir / "last.pt")

    def write_val(self, phase: Phase, position: Position, report: dict[str, Any]) -> None:
        self.log.write(
            {
                "kind": "val",
                "phase": phase.name,
                "episode": position.step,
                "val_overall": report["overall"],
                "val_majority": report["majority"],
                "val_minority": report["minority"],
                "seconds": round(time.perf_counter() - self.start_time, 3),
            }
        )

    def modules(self) -> list[torch.nn.Module]:
        """What a checkpoint holds: the embedding net and what else the method trains."""
        return [self.method.model, *self.method.modules().values()]

    def checkpoint(
        self,
        phase: Phase | None,
        position: Position,
        optimizer: torch.optim.Optimizer | None,
        rng: dict[str, torch.Tensor] | None = None,
    ) -> Checkpoint:
        """The checkpoint of the current weights at ``position`` (``phase`` None: before any step);
        ``rng``: the generator states of every rank (:func:`ranks_rng`), default this process's."""
        units = [p.unit for p in self.method.phases]
        return Checkpoint(
            backbone=str(self.config.backbone),
            config=self.config.to_dict(),
            model=self.method.model.state_dict(),
            method_modules={name: m.state_dict() for name, m in self.method.modules().items()},
            optimizer=None if optimizer is None else optimizer.state_dict(),
            phase="none" if phase is None else phase.name,
            phase_index=position.phase_index,
            unit=phase.unit if phase is not None else (units or ["episode"])[0],
            step=position.step,
            rng=self.method.rng_state() if rng is None else rng,
            rng_device=self.device.type,
            best_val=position.best_val,
            elapsed=position.elapsed,
        )

    def restore(self, checkpoint: Checkpoint) -> Position:
        """Load ``checkpoint`` (last.pt) into the method; return its position."""
        where = self.run_dir / "last.pt"
        phases = self.method.phases
        index = checkpoint.phase_index
        if not (0 <= index < len(phases) and phases[index].name == checkpoint.phase):
            raise CheckpointError(f"{where}: phase {checkpoint.phase!r} is not a phase of this run's method")
        if checkpoint.step > phase_end(phases[index], self.world.stride(phases[index].unit)):
            raise CheckpointError(
                f"{where}: step {checkpoint.step} is past the end of phase {checkpoint.phase}"
            )
        modules = {"model": self.method.model, **self.method.modules()}
        states = {"model": checkpoint.model, **checkpoint.method_modules}
        try:
            for name, module in modules.items():
                module.load_state_dict(states[name])
            self.load_rng(checkpoint)
        except (RuntimeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{where}: does not fit this run's model ({error})") from None
        return Position(index, checkpoint.step, checkpoint.best_val, checkpoint.elapsed)

    def load_rng(self, checkpoint: Checkpoint) -> None:
        """The generators of ``checkpoint``; written on another device type: re-seeded (one line)."""
        if checkpoint.rng_device == self.device.type:
            self.method.load_rng_state(checkpoint.rank_rng(self.world.rank))
            return
        where, now = self.run_dir / "last.pt", self.device.type
        reseed = getattr(self.method, "reseed_device_rng", None)
        if reseed is None:
            raise CheckpointError(
                f"{where}: written on {checkpoint.rng_device}, this run's method cannot resume on {now}; "
                f"resume with --device {checkpoint.rng_device}"
            )
        reseed(checkpoint.rank_rng(self.world.rank), checkpoint.phase_index, checkpoint.step)
        self.warn(
            f"{where} was written on {checkpoint.rng_device}, resuming on {now}: the {now} generator is "
            f"re-seeded from (seed, phase, step) (deterministic, but not the draws {checkpoint.rng_device} "
            "would have made)"
        )
