"""Training checkpoints: one dataclass, :class:`Checkpoint`, for ``RUN/last.pt`` and ``RUN/best.pt``.

On disk a checkpoint is the plain dict of :meth:`Checkpoint.to_state` (tensors and JSON-able values
only), written atomically (a temp file in the run folder, synced, then renamed) and loaded with
``torch.load(weights_only=True)``, so loading one never runs code. ``last.pt`` holds everything a
``--resume`` needs; ``best.pt`` the weights with the best validation accuracy (no optimizer state).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from rfmml.runtime.atomic_files import atomic_write_bytes
from rfmml.runtime.errors import CheckpointError
from rfmml.trainer.run_folder import TAG, writing

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "CheckpointError", "code_version"]

# 2: one Checkpoint layout for every method (phase_index/unit/step, method_modules); format 1 (before
# the training engine) had "episode" (an epoch on the cross-entropy path), "linear" and a dead "extra".
CHECKPOINT_FORMAT = 2
UNITS = ("episode", "epoch")
RANK_PREFIX = "rank{}/"  # rank r's generator states in ``rng`` (torchrun runs)


def code_version() -> str:
    from rfmml import __version__

    return __version__


@dataclass
class Checkpoint:
    """One training checkpoint. :meth:`to_state` gives exactly these keys (the file's layout):

    format          int, CHECKPOINT_FORMAT: the layout; a file of another format is refused
    code_version    str, the rfmml version that wrote it (rfmml-export refuses another version's)
    backbone        str, the backbone name (checked against the run's config on load)
    config          dict, the run's TrainConfig as JSON-able values (the file alone says how it was made)
    model           dict[str, Tensor], the EmbeddingNet's state_dict
    method_modules  dict[str, dict[str, Tensor]], state_dicts of what the method trains besides the
                    embedding net: {"linear": ...} for cross-entropy methods, {} for episodic ones
    optimizer       dict | None, the optimizer's state_dict (last.pt); None in best.pt
    phase           str, the phase's name: "ret", "acf", "protonet", "ce"; "none" before any step
    phase_index     int, that phase's index in the method's phase list
    unit            str, what one step of the phase is: "episode" or "epoch"
    step            int, steps (of ``unit``) done in that phase
    rng             dict[str, Tensor], the method's generator states (uint8 tensors) at that step; a
                    run of N processes (torchrun) also holds rank r's (r = 1..N-1) as "rank{r}/NAME",
                    so the process count of a checkpoint is :attr:`world_size` (see :func:`ranks_rng`)
    rng_device      str, the device type ("cpu", "cuda") of the training device whose generators
                    wrote ``rng``: a CUDA generator's state (16 bytes) does not load into a CPU one
                    (5,056 bytes) nor back, so a resume on another device type re-seeds those (the
                    engine says so); absent in files written before it: "cpu"
    best_val        float, the best validation overall accuracy so far; -1.0 when none yet
    elapsed         float, seconds of training up to this checkpoint (the metrics' clock on resume)
    """

    backbone: str
    config: dict[str, Any]
    model: dict[str, torch.Tensor]
    phase: str
    phase_index: int
    unit: str
    step: int
    rng: dict[str, torch.Tensor]
    rng_device: str = "cpu"
    best_val: float = -1.0
    elapsed: float = 0.0
    optimizer: dict[str, Any] | None = None
    method_modules: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    format: int = CHECKPOINT_FORMAT
    code_version: str = field(default_factory=code_version)

    @property
    def world_size(self) -> int:
        """The number of processes that trained it: 1 + the ranks with entries in ``rng``."""
        return 1 + len({name.split("/")[0] for name in self.rng if "/" in name})

    def rank_rng(self, rank: int) -> dict[str, torch.Tensor]:
        """Rank ``rank``'s generator states (rank 0: those of a single process)."""
        if rank == 0:
            return {name: value for name, value in self.rng.items() if "/" not in name}
        prefix = RANK_PREFIX.format(rank)
        return {name[len(prefix) :]: value for name, value in self.rng.items() if name.startswith(prefix)}

    def to_state(self) -> dict[str, Any]:
        """The plain dict written to disk (the layout in the class docstring)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_state(cls, state: Any, path: str | Path = "checkpoint") -> Checkpoint:
        """Inverse of :meth:`to_state`; CheckpointError for another format, a missing key or a value
        of another type than documented."""
        found = state.get("format") if isinstance(state, dict) else None
        if not _is_count(found) or found != CHECKPOINT_FORMAT:
            shown = found if _is_count(found) else "?"
            raise CheckpointError(
                f"{path}: checkpoint format {shown} is not {CHECKPOINT_FORMAT} (written by another rfmml "
                "version); retrain or use that version"
            )
        names = [f.name for f in fields(cls)]
        state = {"rng_device": "cpu", **state}  # written before the field existed: on the CPU
        missing = [name for name in names if name not in state]
        if missing:
            raise CheckpointError(f"{path}: damaged checkpoint (no {', '.join(missing)})")
        wrong = next((name for name, ok in FIELD_CHECKS.items() if not ok(state[name])), None)
        if wrong is not None:
            raise CheckpointError(f"{path}: damaged checkpoint ({wrong} is not as documented)")
        return cls(**{name: state[name] for name in names})

    def save(self, path: str | Path) -> None:
        """Write atomically: the previous file stays whole until the new one is complete on disk.

        Serialised in memory first: on a nearly full disk ``torch.save`` into a file fails with a
        RuntimeError from its zip writer, while a plain write fails with the OSError (ENOSPC) that
        ``writing`` turns into one line naming the file."""
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(self.to_state(), buffer)
        with writing(path):
            atomic_write_bytes(path, buffer.getvalue(), tag=TAG)

    @classmethod
    def load(cls, path: str | Path, backbone: str | None = None) -> Checkpoint:
        """Load safely (``weights_only=True``); check the format (and the backbone when given)."""
        checkpoint = cls.from_state(read_state(path), path)
        if backbone is not None and checkpoint.backbone != backbone:
            raise CheckpointError(
                f"{path}: checkpoint is for backbone {checkpoint.backbone!r}, not {backbone!r}"
            )
        return checkpoint


def ranks_rng(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One ``rng`` dict from every rank's generator states (index r = rank r): rank 0's as they are,
    rank r's as "rank{r}/NAME"; a single process's states unchanged."""
    rng = dict(states[0])
    for rank, state in enumerate(states[1:], 1):
        rng.update({RANK_PREFIX.format(rank) + name: value for name, value in state.items()})
    return rng


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_tensors(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


FIELD_CHECKS = {  # the documented type of every field (format is checked first)
    "code_version": lambda v: isinstance(v, str),
    "backbone": lambda v: isinstance(v, str),
    "config": lambda v: isinstance(v, dict),
    "model": _is_tensors,
    "method_modules": lambda v: isinstance(v, dict) and all(_is_tensors(m) for m in v.values()),
    "optimizer": lambda v: v is None or isinstance(v, dict),
    "phase": lambda v: isinstance(v, str),
    "phase_index": _is_count,
    "unit": lambda v: v in UNITS,
    "step": _is_count,
    "rng": _is_tensors,
    "rng_device": lambda v: v in ("cpu", "cuda", "mps", "xpu"),
    "best_val": _is_number,
    "elapsed": _is_number,
}


def read_state(path: str | Path) -> Any:
    """The raw object in a checkpoint file (tensors and plain values only); CheckpointError if none."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types on a bad file; say it in one line
        raise CheckpointError(f"{path}: not a readable rfmml checkpoint ({type(error).__name__})") from None
