"""Cross-entropy baselines: a linear layer on the same backbone; one engine step = one epoch.

Methods (all on the same split, backbone, augmentation and evaluation as RF-MML):
  plain        cross-entropy, images in random order;
  reweight     cross-entropy weighted by inverse class frequency (ReWeight);
  resample     class-balanced sampling with replacement (ReSample), same number of draws per epoch;
  logit-adjust logit-adjusted cross-entropy (Menon et al. 2021), raw logits at test time.
Adam; the learning rate is divided by 5 every ``lr_step`` epochs (the paper's schedule); the weights
with the best validation overall accuracy (linear head) are kept in best.pt. One phase, "ce": a
metrics record, a validation and last.pt every epoch; progress counts batches.

Under torchrun an epoch stays one pass over the training set: every rank draws the same epoch order
(seed + 1) and trains on its shard (``World.shard``: every N-th index, padded to equal length), the
gradients of each batch averaged across ranks (a global batch of N x --ce-batch); the images'
augmentation (or cached view) is drawn per rank (seed + 2 + 1000 * rank); the epoch's loss and
accuracy are summed over the ranks' shards.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rfmml.trainer.ce_losses import (
    balanced_sampling_probabilities,
    inverse_frequency_weights,
    log_prior,
    logit_adjusted_loss,
)
from rfmml.trainer.heads import accuracy_report, embed
from rfmml.trainer.method_interface import Phase, StepResult, TrainData, TrainSetup
from rfmml.trainer.sampler import resume_seed


def ce_loss_fn(method: str, counts: torch.Tensor, tau: float, device: torch.device | str = "cpu"):
    """The batch loss of ``method``: (logits [B, C] on ``device``, labels [B]) -> scalar.

    The class weights / log-priors (float32 [C]) are moved to ``device`` here, once: a copy per batch
    would be a blocking host-to-device transfer on CUDA. They are the partial's ``keywords``."""
    if method in ("plain", "resample"):
        return F.cross_entropy
    if method == "reweight":
        return partial(F.cross_entropy, weight=inverse_frequency_weights(counts).to(device))
    if method == "logit-adjust":
        return partial(logit_adjusted_loss, log_pi=log_prior(counts).to(device), tau=tau)
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
def linear_report(model, linear: nn.Linear, images, labels, data: TrainData, batch_size: int, device) -> dict:
    """Accuracy report of ``linear`` on the embeddings of ``images`` (computed on the CPU)."""
    emb = embed(model, images, batch_size, device)
    pred = linear.cpu()(emb).argmax(1)
    linear.to(device)
    return accuracy_report(pred, labels.cpu(), data.classes, data.majority)


class CrossEntropyMethod:
    """The embedding net + a linear layer trained with ``config.method``'s loss, an epoch per step."""

    has_validation: bool

    def __init__(self, setup: TrainSetup) -> None:
        config, data = setup.config, setup.data
        self.setup = setup
        self.model = setup.model
        n_classes = len(setup.split.classes)
        # created here, after the embedding net: the global generator's draws fix its initial weights
        self.linear = nn.Linear(setup.model.embedding_dim, n_classes).to(setup.device)
        self.gen = torch.Generator(device=setup.device).manual_seed(config.seed + 1)
        self.world = setup.world
        if self.world.size == 1:  # the epoch order's generator also draws the augmentation
            self.augment_gen = self.gen
        else:  # the order is shared by every rank, the augmentation is each rank's own
            self.augment_gen = torch.Generator(device=setup.device).manual_seed(setup.sampler_seed + 2)
        self.has_validation = data.val_images.shape[0] > 0
        counts = torch.bincount(data.train_labels.cpu(), minlength=n_classes)
        self.loss_fn = ce_loss_fn(config.method, counts, config.la_tau, setup.device)
        self.augment = data.augmenter(config.augment, setup.device)
        self.cuda = setup.device.type == "cuda"
        per_rank = -(-data.train_images.shape[0] // self.world.size)
        batches = -(-per_rank // config.ce_batch)
        epochs = int(config.epochs)
        self.phases = [Phase("ce", epochs, "epoch", float(config.lr), "--lr", 1, 1, batches, "batches")]
        self._last: dict[str, Any] = {}

    def describe(self) -> str:
        config = self.setup.config
        return (
            f"training on {self.setup.device}: {config.backbone} (--tune {config.tune}) + linear layer, "
            f"{config.method} "
            f"cross-entropy, {config.epochs} epochs, batch {config.ce_batch}, lr {config.lr:g} / 5 every "
            f"{config.lr_step}"
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"linear": self.linear}

    def parameters(self) -> list[nn.Parameter]:
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # frozen parts: --tune
        return trainable + list(self.linear.parameters())

    def step(
        self, phase_index: int, step: int, optimizer: torch.optim.Optimizer, tick: Callable[[int], None]
    ) -> StepResult:
        """Epoch ``step``: the lr of the schedule, then one pass over the epoch's order in batches."""
        config, data = self.setup.config, self.setup.data
        self.model.train()
        for group in optimizer.param_groups:  # a pure function of the epoch, so resume needs no state
            group["lr"] = epoch_lr(float(config.lr), int(config.lr_step), step)
        order = self.world.shard(epoch_order(config.method, data.train_labels, len(data.classes), self.gen))
        total_loss, correct = self._epoch(order, optimizer, tick)
        n = order.shape[0]
        if self.world.size > 1:  # the epoch's figures over every rank's shard
            total_loss, correct, n = self.world.sum(total_loss), self.world.sum(correct), n * self.world.size
        record = {
            "kind": "epoch",
            "phase": "ce",
            "episode": step,
            "loss": float(total_loss) / n,
            "accuracy": float(correct) / n,
            "lr": optimizer.param_groups[0]["lr"],
        }
        self._last = {"epoch": step, **record}
        return StepResult(total_loss / n, lambda: record)

    def _epoch(
        self, order: torch.Tensor, optimizer: torch.optim.Optimizer, tick: Callable[[int], None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Train on ``order`` in batches; (summed loss, correct count) as 0-d device tensors."""
        config, data = self.setup.config, self.setup.data
        total_loss = torch.zeros((), device=self.setup.device)
        correct = torch.zeros((), device=self.setup.device)
        for start in range(0, order.shape[0], config.ce_batch):
            index = order[start : start + config.ce_batch]
            images, labels = data.batch(index, self.augment, self.augment_gen), data.train_labels[index]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
                logits = self.linear(self.model(images)).float()
            loss = self.loss_fn(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * labels.shape[0]
            correct += (logits.argmax(1) == labels).sum()
            tick(1)
        return total_loss, correct

    def progress_note(self, phase_index: int, step: int) -> str:
        last = self._last
        return f"epoch {step}/{self.phases[0].steps} loss {last['loss']:.3f} acc {last['accuracy']:.3f}"

    def validate(self) -> dict[str, Any]:
        data = self.setup.data
        return linear_report(
            self.model,
            self.linear,
            data.val_images,
            data.val_labels,
            data,
            self.setup.config.batch_size,
            self.setup.device,
        )

    def rng_state(self) -> dict[str, torch.Tensor]:
        if self.augment_gen is self.gen:
            return {"gen": self.gen.get_state()}
        return {"gen": self.gen.get_state(), "augment_gen": self.augment_gen.get_state()}

    def load_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.gen.set_state(state["gen"])
        if self.augment_gen is not self.gen:
            self.augment_gen.set_state(state["augment_gen"])

    def reseed_device_rng(self, state: dict[str, torch.Tensor], phase_index: int, step: int) -> None:
        """Resume from a generator written on another device type (see ``Engine.load_rng``)."""
        self.gen.manual_seed(resume_seed(self.setup.config.seed + 1, phase_index, step))
        if self.augment_gen is not self.gen:
            self.augment_gen.manual_seed(resume_seed(self.setup.sampler_seed + 2, phase_index, step))

    def memory_note(self, phase_index: int) -> str:
        """The batch size and the flag that lowers it (for an out-of-memory error)."""
        return f"batch of {self.setup.config.ce_batch} images; lower --ce-batch"
