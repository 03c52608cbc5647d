"""``--method frozen``: no training at all. The pretrained backbone's features (computed once and
cached, as for ``--tune head``) with the Proto and balanced-SVM heads: the zero-effort baseline that
every method must beat, and what a user gets in seconds. The engine runs no phase and keeps the
initial weights as best.pt, so the run exports like any other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rfmml.trainer.method_interface import Phase, StepResult, TrainSetup


class FrozenMethod:
    """A method with no phases (see the module docstring)."""

    phases: list[Phase]
    has_validation: bool

    def __init__(self, setup: TrainSetup) -> None:
        self.setup = setup
        self.model = setup.model
        self.phases = []
        self.has_validation = setup.data.val_images.shape[0] > 0

    def describe(self) -> str:
        config = self.setup.config
        return f"no training ({config.method}): {config.backbone} features with the Proto and SVM heads"

    def modules(self) -> dict[str, torch.nn.Module]:
        return {}

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def step(
        self, phase_index: int, step: int, optimizer: torch.optim.Optimizer, tick: Callable[[int], None]
    ) -> StepResult:
        raise AssertionError("the frozen method has no phase to step")

    def validate(self) -> dict[str, Any]:
        raise AssertionError("the frozen method has no phase to validate")

    def progress_note(self, phase_index: int, step: int) -> str:
        return ""

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        return None
