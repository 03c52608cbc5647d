"""The episodic training loop (RET then ACF), validation, checkpoints and metrics.jsonl.

The decoded training images live as one uint8 tensor on the training device; every episode is
sampled, gathered, augmented and embedded there in one forward pass. The host syncs with the device
only when it logs (every ``log_every`` episodes) and validates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rfmml.trainer.augment import Augmenter
from rfmml.trainer.checkpoint import save_checkpoint
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.episode import episode_loss
from rfmml.trainer.heads import accuracy_report, embed, fit_prototypes, proto_scores
from rfmml.trainer.sampler import EpisodeSampler, EpisodeSpec


@dataclass(frozen=True)
class Phase:
    """One phase of episodic training: a name ("ret", "acf"), a budget, a learning rate, a spec."""

    name: str
    episodes: int
    lr: float
    spec: EpisodeSpec


@dataclass
class Position:
    """Where training stands: index into the phase list and episodes done in that phase."""

    phase: int = 0
    episode: int = 0
    step: int = 0  # episodes done over all phases
    best_val: float = -1.0
    elapsed: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainData:
    """Tensors for training: train images uint8 [N, S, S, 3] on the device, labels int64 [N]; the
    validation part likewise (may be empty); class names and majority names for reports."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    classes: list[str]
    majority: list[str]


class MetricsLog:
    """Append-only JSON lines; on resume, records past the checkpoint are dropped first."""

    def __init__(self, path: Path):
        self.path = path

    def truncate_after(self, phase_names: list[str], position: Position) -> None:
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            record = json.loads(line)
            order = (phase_names.index(record["phase"]), record["episode"])
            if order <= (position.phase, position.episode):
                keep.append(line)
        self.path.write_text("".join(k + "\n" for k in keep))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")


def validate(model, data: TrainData, config: TrainConfig, device: torch.device) -> dict:
    """Proto-head accuracy on the validation part, prototypes from ALL training images."""
    n_classes = len(data.classes)
    train_emb = embed(model, data.train_images, config.batch_size, device)
    prototypes = fit_prototypes(train_emb, data.train_labels.cpu(), n_classes)
    val_emb = embed(model, data.val_images, config.batch_size, device)
    pred = proto_scores(val_emb, prototypes, config.distance).argmax(1)
    return accuracy_report(pred, data.val_labels.cpu(), data.classes, data.majority)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=lr)


def train(
    model: torch.nn.Module,
    data: TrainData,
    phases: list[Phase],
    config: TrainConfig,
    run_dir: Path,
    device: torch.device,
    sampler: EpisodeSampler,
    position: Position | None = None,
    optimizer_state: dict | None = None,
) -> Position:
    """Run the phases from ``position`` (None: the start); write metrics, last.pt and best.pt."""
    position = position or Position()
    log = MetricsLog(run_dir / "metrics.jsonl")
    names = [p.name for p in phases]
    log.truncate_after(names, position)
    cuda = device.type == "cuda"
    augment = Augmenter(data.train_images.shape[1], device) if config.augment else None
    total = sum(p.episodes for p in phases)
    start_time = time.perf_counter() - position.elapsed
    checkpointer = Checkpointer(model, data, config, device, sampler, run_dir, log, start_time)
    bar = progress_bar(total, position.step, config.progress)
    model.train()
    for index in range(position.phase, len(phases)):
        phase = phases[index]
        optimizer = make_optimizer(model, phase.lr)
        if index == position.phase and optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        first = position.episode + 1 if index == position.phase else 1
        position.phase, position.episode = index, first - 1
        window_loss = torch.zeros((), device=device)
        window_acc = torch.zeros((), device=device)
        window_start, window_n = time.perf_counter(), 0
        for episode in range(first, phase.episodes + 1):
            ep = sampler.sample(phase.spec)
            batch = data.train_images[torch.cat([ep.support, ep.query])]
            if augment is not None:
                batch = augment(batch, sampler.gen)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                emb = model(batch)
            loss, acc = episode_loss(emb, ep.k, ep.n, ep.query_labels, config.distance)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            window_loss += loss.detach()
            window_acc += acc.detach()
            window_n += 1
            position.episode, position.step = episode, position.step + 1
            bar.update(1)
            last = episode == phase.episodes
            if episode % config.log_every == 0 or last:
                position.elapsed = time.perf_counter() - start_time
                record = {
                    "kind": "episode",
                    "phase": phase.name,
                    "episode": episode,
                    "K": ep.k,
                    "N": ep.n,
                    "queries": ep.n_query,
                    "queries_per_class": ep.queries_per_class(),
                    "loss": float(loss.detach()),
                    "accuracy": float(acc.detach()),
                    "seconds": round(position.elapsed, 3),
                }
                log.write(record)
                rate = window_n / max(time.perf_counter() - window_start, 1e-9)
                bar.set_postfix_str(
                    f"{phase.name} ep {episode}/{phase.episodes} loss {float(window_loss) / window_n:.3f} "
                    f"acc {float(window_acc) / window_n:.3f} {rate:.1f} ep/s"
                )
                window_loss.zero_()
                window_acc.zero_()
                window_start, window_n = time.perf_counter(), 0
            if episode % config.val_every == 0 or last:
                checkpointer.validate_and_save(phase, position, optimizer)
        position.episode = phase.episodes
    bar.close()
    return position


@dataclass
class Checkpointer:
    """Validates and writes ``best.pt`` / ``last.pt`` (atomically) and the validation records."""

    model: torch.nn.Module
    data: TrainData
    config: TrainConfig
    device: torch.device
    sampler: EpisodeSampler
    run_dir: Path
    log: MetricsLog
    start_time: float

    def validate_and_save(self, phase: Phase, position: Position, optimizer: torch.optim.Optimizer) -> None:
        """Validate (when there are validation images), keep best.pt, write last.pt."""
        state = {
            "backbone": self.config.backbone,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "phase": phase.name,
            "phase_index": position.phase,
            "episode": position.episode,
            "step": position.step,
            "rng": self.sampler.state(),
            "best_val": position.best_val,
            "extra": {},
        }
        if self.data.val_images.shape[0] > 0:
            report = validate(self.model, self.data, self.config, self.device)
            self.log.write(
                {
                    "kind": "val",
                    "phase": phase.name,
                    "episode": position.episode,
                    "val_overall": report["overall"],
                    "val_majority": report["majority"],
                    "val_minority": report["minority"],
                    "seconds": round(time.perf_counter() - self.start_time, 3),
                }
            )
            if report["overall"] > position.best_val:
                position.best_val = report["overall"]
                state["best_val"] = position.best_val
                save_checkpoint(self.run_dir / "best.pt", {**state, "optimizer": None, "val": report})
        else:  # no validation images: the latest weights are the best we know
            save_checkpoint(self.run_dir / "best.pt", {**state, "optimizer": None})
        position.elapsed = time.perf_counter() - self.start_time
        state["elapsed"] = position.elapsed
        save_checkpoint(self.run_dir / "last.pt", state)


def progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="ep", disable=not enabled, dynamic_ncols=True, desc="rfmml-train"
    )
