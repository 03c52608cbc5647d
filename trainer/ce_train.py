"""Cross-entropy baselines: a linear layer on the same backbone, trained by epochs.

Methods (all on the same split, backbone, augmentation and evaluation as RF-MML):
  plain        cross-entropy, images in random order;
  reweight     cross-entropy weighted by inverse class frequency (ReWeight);
  resample     class-balanced sampling with replacement (ReSample), same number of draws per epoch;
  logit-adjust logit-adjusted cross-entropy (Menon et al. 2021), raw logits at test time.
Adam; the learning rate is divided by 5 every ``lr_step`` epochs (the paper's schedule); the weights
with the best validation overall accuracy (linear head) are kept in best.pt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rfmml.trainer.augment import Augmenter
from rfmml.trainer.ce_losses import (
    balanced_sampling_probabilities,
    inverse_frequency_weights,
    log_prior,
    logit_adjusted_loss,
)
from rfmml.trainer.checkpoint import save_checkpoint
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.heads import accuracy_report, embed
from rfmml.trainer.loop import MetricsLog, Position, TrainData, progress_bar


@dataclass
class EpochPosition:
    """Epochs done and the best validation accuracy so far (restored on --resume)."""

    epoch: int = 0
    best_val: float = -1.0
    elapsed: float = 0.0


def ce_loss_fn(method: str, counts: torch.Tensor, tau: float):
    """The batch loss of ``method``: (logits [B, C], labels [B]) -> scalar."""
    if method in ("plain", "resample"):
        return F.cross_entropy
    if method == "reweight":
        weights = inverse_frequency_weights(counts)
        return lambda logits, labels: F.cross_entropy(logits, labels, weight=weights.to(logits.device))
    if method == "logit-adjust":
        log_pi = log_prior(counts)
        return lambda logits, labels: logit_adjusted_loss(logits, labels, log_pi.to(logits.device), tau)
    raise ValueError(f"not a cross-entropy method: {method!r}")


def epoch_lr(lr: float, step: int, epoch: int) -> float:
    """The paper's schedule: ``lr`` divided by 5 every ``step`` epochs (epochs count from 1)."""
    return lr * 0.2 ** ((epoch - 1) // step)


def epoch_order(method: str, labels: torch.Tensor, n_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Indices of one epoch, int64 [N] on the labels' device: a permutation, or for ``resample`` N
    class-balanced draws with replacement."""
    n = labels.shape[0]
    if method == "resample":
        probabilities = balanced_sampling_probabilities(labels.cpu(), n_classes).to(labels.device)
        return torch.multinomial(probabilities.float(), n, replacement=True, generator=gen)
    return torch.randperm(n, generator=gen, device=labels.device)


@torch.no_grad()
def linear_report(model, linear: nn.Linear, images, labels, data: TrainData, config, device) -> dict:
    emb = embed(model, images, config.batch_size, device)
    pred = linear.cpu()(emb).argmax(1)
    linear.to(device)
    return accuracy_report(pred, labels.cpu(), data.classes, data.majority)


def train_cross_entropy(
    model: nn.Module,
    linear: nn.Linear,
    data: TrainData,
    config: TrainConfig,
    run_dir: Path,
    device: torch.device,
    gen: torch.Generator,
    position: EpochPosition | None = None,
    optimizer_state: dict | None = None,
) -> EpochPosition:
    """Train ``model`` + ``linear`` for ``config.epochs`` epochs from ``position``; write
    metrics.jsonl (one record per epoch), last.pt every epoch and best.pt on a new best."""
    position = position or EpochPosition()
    n_classes = len(data.classes)
    counts = torch.bincount(data.train_labels.cpu(), minlength=n_classes)
    loss_fn = ce_loss_fn(config.method, counts, config.la_tau)
    params = list(model.parameters()) + list(linear.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    augment = Augmenter(data.train_images.shape[1], device) if config.augment else None
    log = MetricsLog(run_dir / "metrics.jsonl")
    log.truncate_after(["ce"], Position(phase=0, episode=position.epoch))
    cuda = device.type == "cuda"
    batches = -(-data.train_images.shape[0] // config.ce_batch)
    bar = progress_bar(config.epochs * batches, position.epoch * batches, config.progress)
    start_time = time.perf_counter() - position.elapsed
    for epoch in range(position.epoch + 1, config.epochs + 1):
        model.train()
        for group in optimizer.param_groups:  # a pure function of the epoch, so resume needs no state
            group["lr"] = epoch_lr(config.lr, config.lr_step, epoch)
        order = epoch_order(config.method, data.train_labels, n_classes, gen)
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for start in range(0, order.shape[0], config.ce_batch):
            index = order[start : start + config.ce_batch]
            images, labels = data.train_images[index], data.train_labels[index]
            if augment is not None:
                images = augment(images, gen)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = linear(model(images)).float()
            loss = loss_fn(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * labels.shape[0]
            correct += (logits.argmax(1) == labels).sum()
            bar.update(1)
        position.epoch = epoch
        position.elapsed = time.perf_counter() - start_time
        n = order.shape[0]
        record = {
            "kind": "epoch",
            "phase": "ce",
            "episode": epoch,
            "loss": float(total_loss) / n,
            "accuracy": float(correct) / n,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(position.elapsed, 3),
        }
        log.write(record)
        bar.set_postfix_str(
            f"{config.method} epoch {epoch}/{config.epochs} loss {record['loss']:.3f} "
            f"acc {record['accuracy']:.3f}"
        )
        state = {
            "backbone": config.backbone,
            "config": config.to_dict(),
            "model": model.state_dict(),
            "linear": linear.state_dict(),
            "optimizer": optimizer.state_dict(),
            "phase": "ce",
            "phase_index": 0,
            "episode": epoch,
            "step": epoch,
            "rng": {"gen": gen.get_state()},
            "best_val": position.best_val,
            "elapsed": position.elapsed,
            "extra": {},
        }
        if data.val_images.shape[0] > 0:
            report = linear_report(model, linear, data.val_images, data.val_labels, data, config, device)
            log.write(
                {
                    "kind": "val",
                    "phase": "ce",
                    "episode": epoch,
                    "val_overall": report["overall"],
                    "val_majority": report["majority"],
                    "val_minority": report["minority"],
                    "seconds": round(time.perf_counter() - start_time, 3),
                }
            )
            if report["overall"] > position.best_val:
                position.best_val = state["best_val"] = report["overall"]
                save_checkpoint(run_dir / "best.pt", {**state, "optimizer": None, "val": report})
        else:
            save_checkpoint(run_dir / "best.pt", {**state, "optimizer": None})
        save_checkpoint(run_dir / "last.pt", state)
    bar.close()
    return position
