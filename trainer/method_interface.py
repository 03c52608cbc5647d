"""What a training method is, as the engine runs it: the :class:`Method` interface (its phases and
its step), a :class:`Phase`, what a step returns (:class:`StepResult`), and what a method is built
from (:class:`TrainSetup`, with the decoded :class:`TrainData`). The loop that runs it is
``rfmml.trainer.engine``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from rfmml.trainer.augment import Augmenter
from rfmml.trainer.config import TrainConfig
from rfmml.trainer.distributed import SINGLE, World

if TYPE_CHECKING:
    from rfmml.trainer.split import Split


@dataclass
class TrainData:
    """Tensors for training: train images uint8 [N, S, S, 3] on the device, labels int64 [N]; the
    validation part likewise (may be empty); class names and majority names for reports.

    On cached features (``--tune head``, ``--method frozen``) the "images" are the backbone's
    features float32 [N, F] of each image as it is, and ``train_views`` holds the training features of
    every cached view, float32 [N, V, F] (V = 8 dihedral transforms with --augment, else 1)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    classes: list[str]
    majority: list[str]
    train_views: torch.Tensor | None = None

    @property
    def on_features(self) -> bool:
        return self.train_views is not None

    def augmenter(self, augment: bool, device: torch.device) -> Augmenter | None:
        """The image augmenter for ``--augment`` (None without it, or on features: views instead)."""
        return Augmenter(self.train_images.shape[1], device) if augment and not self.on_features else None

    def batch(self, index: torch.Tensor, augment: Augmenter | None, gen: torch.Generator) -> torch.Tensor:
        """The training inputs ``index`` (int64 [B]): images uint8 [B, S, S, 3], augmented when
        ``augment``; on features float32 [B, F], one random cached view per image when several."""
        if self.train_views is not None:
            views = self.train_views.shape[1]
            if views == 1:
                return self.train_images[index]
            view = torch.randint(0, views, (index.shape[0],), generator=gen, device=index.device)
            return self.train_views[index, view]
        batch = self.train_images[index]
        return augment(batch, gen) if augment is not None else batch


@dataclass
class TrainSetup:
    """What a method is built from: the run's config and split, the embedding net (on the device),
    the decoded data and the device; ``parts`` {"train"|"val"|"test": (inputs, labels)} as the final
    evaluation embeds them (images, or on cached features the features)."""

    config: TrainConfig
    split: Split
    model: torch.nn.Module
    data: TrainData
    device: torch.device
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    world: World = SINGLE

    @property
    def sampler_seed(self) -> int:
        """The seed of this process's episode sampler: the run's seed, + 1000 * rank under torchrun."""
        return self.world.rank_seed(int(self.config.seed))


@dataclass(frozen=True)
class Phase:
    """One phase of a method, as the engine runs it.

    name: the metrics' "phase" ("ret", "acf", "protonet", "ce"); steps: its length in ``unit`` s
    ("episode" or "epoch"); lr and the flag that sets it (named when the loss diverges); a metrics
    record every ``log_every`` steps and a validation + checkpoint every ``val_every`` steps (and at
    the last step); ``ticks`` progress items per step, counted in ``tick_unit`` (e.g. the batches of
    an epoch).
    """

    name: str
    steps: int
    unit: str
    lr: float
    lr_flag: str
    log_every: int
    val_every: int
    ticks: int = 1
    tick_unit: str = "episodes"


@dataclass
class StepResult:
    """What one step returns: its loss (0-d tensor on the device, detached) and its metrics record
    without "seconds" (a callable: building it syncs with the device, so only when logging)."""

    loss: torch.Tensor
    record: Callable[[], dict[str, Any]]


class Method(Protocol):
    """A training method. ``model`` is the embedding net; ``modules`` what else it trains (saved as
    the checkpoint's method_modules); ``has_validation``: whether there are validation images."""

    model: torch.nn.Module
    phases: list[Phase]
    has_validation: bool

    def describe(self) -> str: ...

    def modules(self) -> dict[str, torch.nn.Module]: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def step(
        self, phase_index: int, step: int, optimizer: torch.optim.Optimizer, tick: Callable[[int], None]
    ) -> StepResult: ...

    def validate(self) -> dict[str, Any]: ...

    def progress_note(self, phase_index: int, step: int) -> str: ...

    def rng_state(self) -> dict[str, torch.Tensor]: ...

    def load_rng_state(self, state: dict[str, torch.Tensor]) -> None: ...

    # Optional (looked up with getattr, so a method without them still works):
    #   reseed_device_rng(state, phase_index, step) -> None: resume on another device type (the
    #     device generators' states do not transfer): load what does, re-seed the rest from
    #     (seed, phase_index, step); without it such a resume is refused with one line.
    #   memory_note(phase_index) -> str: on an out-of-memory error, the size of the step and the flag
    #     that lowers it ("episode of 700 images ...; lower --queries or --n-max").
