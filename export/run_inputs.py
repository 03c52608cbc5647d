"""What an export reads from a training run, checked up front with one-line errors.

A run folder must hold ``config.json``, ``split.json`` and the checkpoint (``best.pt`` unless told
otherwise); the checkpoint must come from this code version and the run's backbone; the training
and validation images must be where ``split.json`` says (or under ``--data DIR``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfmml.runtime.errors import ExportError


@dataclass(frozen=True)
class RunInputs:
    """The model in eval mode on the CPU, its input size (H, W), the split, and decoded images:
    train/val images uint8 numpy [N, H, W, 3], labels int64 numpy [N]."""

    model: object
    input_size: tuple[int, int]
    backbone: str
    split: object
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    config: object  # the run's TrainConfig
    metadata: dict


def check_run_folder(run_dir: Path, checkpoint: str) -> Path:
    """The checkpoint's path; ExportError when the folder, its config/split or the checkpoint is
    missing, or when config.json does not name the run's backbone."""
    if not run_dir.is_dir():
        raise ExportError(f"run folder not found: {run_dir} (the --out folder of rfmml-train)")
    for name in ("config.json", "split.json"):
        if not (run_dir / name).is_file():
            raise ExportError(
                f"{run_dir / name} is missing: {run_dir} is not a complete rfmml-train run folder"
            )
    check_config_file(run_dir / "config.json")
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else run_dir / checkpoint
    if not path.is_file():
        others = sorted(p.name for p in run_dir.glob("*.pt") if p.is_file())
        hint = f"; checkpoints there: {', '.join(others)} (choose one with --checkpoint)" if others else ""
        raise ExportError(f"{run_dir} has no checkpoint {path.name} (expected {path}){hint}")
    return path


def check_config_file(path: Path) -> None:
    """ExportError naming ``path`` unless it is a JSON object with a non-empty ``backbone`` name (the
    one setting an export cannot do without: it rebuilds the network the checkpoint belongs to)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # invalid JSON or not UTF-8
        raise ExportError(f"{path}: not a readable config.json ({error})") from None
    if not isinstance(config, dict):
        raise ExportError(f"{path}: expected a JSON object of settings, found {type(config).__name__}")
    backbone = config.get("backbone")
    if not isinstance(backbone, str) or not backbone.strip():
        raise ExportError(
            f'{path} names no backbone (its "backbone" is {backbone!r}): the export needs the run\'s '
            "network; restore the config.json that rfmml-train wrote"
        )


def check_checkpoint(state: dict, backbone: str, path: Path) -> None:
    """Refuse a checkpoint written by another rfmml version or for another backbone."""
    from rfmml.trainer.checkpoint import code_version

    if state.get("backbone") not in (None, backbone):
        raise ExportError(
            f"{path}: checkpoint is for backbone {state.get('backbone')!r}, the run's is {backbone!r}"
        )
    written_by = state.get("code_version")
    if written_by != code_version():
        raise ExportError(
            f"{path}: checkpoint written by rfmml {written_by}, this is rfmml {code_version()}; "
            "export it with that version (or retrain)"
        )


def locate_data(split, data: Path | None):
    """The split with ``data_root`` replaced by ``--data`` when given; ExportError when missing."""
    if data is not None:
        split = dataclasses.replace(split, data_root=str(Path(data).resolve()))
    if split.is_synthetic:
        return split
    root = Path(split.data_root)
    origin = "--data" if data is not None else "data_root in split.json"
    if not root.is_dir():
        raise ExportError(
            f"data folder not found: {root} ({origin}); the heads need the training images: "
            "point to the folder with --data DIR"
        )
    paths, _ = split.labels_and_paths("train")
    missing = next((p for p in paths if not Path(p).is_file()), None)
    if missing is not None:
        raise ExportError(
            f"training image not found: {missing} (under {root}, {origin}); point to the data folder "
            "the run was trained on with --data DIR"
        )
    return split


def load_inputs(run_dir: Path, checkpoint: str, data: Path | None, log: Callable[[str], None]) -> RunInputs:
    """Load the run's model (CPU, eval mode) and decode its training and validation images."""
    from rfmml.trainer.run import load_run

    run_dir = Path(run_dir)
    ckpt_path = check_run_folder(run_dir, checkpoint)
    loaded = load_run(run_dir, checkpoint=str(ckpt_path.resolve()))
    config, split = loaded.config, locate_data(loaded.split, data)
    check_checkpoint(loaded.checkpoint, config.backbone, ckpt_path)
    log(f"run {run_dir} ({ckpt_path.name}, {config.backbone}); decoding training and validation images ...")
    (train_images, train_labels), (val_images, val_labels) = _decode(split, config, ("train", "val"))
    if len(train_labels) == 0:
        raise ExportError(f"{run_dir / 'split.json'} lists no training images")
    size = int(config.image_size)
    return RunInputs(
        model=loaded.model.cpu().eval(),
        input_size=(size, size),
        backbone=config.backbone,
        split=split,
        train_images=train_images,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        config=config,
        metadata=_provenance(run_dir, ckpt_path, loaded.checkpoint, config.backbone, split.data_root),
    )


def _decode(split, config, parts: tuple[str, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(images uint8 [N, S, S, 3], labels int64 [N]) per part, decoded as the run's training did."""
    from rfmml.trainer.data import default_cache_dir, load_part

    cache = None if config.cache_dir == "" else Path(config.cache_dir or default_cache_dir())
    decoded = []
    for part in parts:
        images, labels = load_part(split, part, int(config.image_size), cache_dir=cache)
        decoded.append((images.numpy(), labels.numpy().astype(np.int64)))
    return decoded


def _provenance(run_dir: Path, ckpt_path: Path, state: dict, backbone: str, data_root: str) -> dict:
    """Where the exported weights come from, for the head's metadata."""
    return {
        "run": str(run_dir.resolve()),
        "checkpoint": ckpt_path.name,
        "phase": state.get("phase"),
        "step": state.get("step"),
        "unit": state.get("unit"),
        "backbone": backbone,
        "code_version": state.get("code_version"),
        "data_root": data_root,
    }
