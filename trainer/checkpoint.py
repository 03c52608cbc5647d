"""Checkpoints: plain tensors and JSON-able values only, written atomically, loaded with
``torch.load(weights_only=True)``.

Layout of a checkpoint dict:
  format: int (CHECKPOINT_FORMAT), code_version: str, backbone: str,
  config: dict (the run's TrainConfig as JSON-able values),
  model: state_dict of the EmbeddingNet, optimizer: state_dict or None,
  phase: str, episode: int (episodes done in that phase), step: int (episodes done overall),
  rng: ByteTensor (torch.Generator state), best_val: float, extra: dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rfmml.runtime.artifact import atomic_write
from rfmml.runtime.errors import CheckpointError

CHECKPOINT_FORMAT = 1


def code_version() -> str:
    from rfmml import __version__

    return __version__


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a temp file in the same folder, then rename)."""
    path = Path(path)
    state = {"format": CHECKPOINT_FORMAT, "code_version": code_version(), **state}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, backbone: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely; check its format (and backbone when given)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types on a bad file; say it in one line
        raise CheckpointError(f"{path}: not a readable rfmml checkpoint ({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {state.get('format') if isinstance(state, dict) else '?'} "
            f"is not {CHECKPOINT_FORMAT} (written by another rfmml version); retrain or use that version"
        )
    if backbone is not None and state.get("backbone") != backbone:
        raise CheckpointError(
            f"{path}: checkpoint is for backbone {state.get('backbone')!r}, not {backbone!r}"
        )
    return state
