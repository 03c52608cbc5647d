"""What an export reads from a training run, checked up front with one-line errors.

A run folder must hold ``config.json``, ``split.json`` and the checkpoint (``best.pt`` unless told
otherwise); the checkpoint must come from this code version and the run's backbone; the training
and validation images must be where ``split.json`` says (or under ``--data DIR``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rfmml.export.onnx_export import ExportError


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
    """The checkpoint's path; ExportError when the folder, its config/split or the checkpoint is missing."""
    if not run_dir.is_dir():
        raise ExportError(f"run folder not found: {run_dir} (the --out folder of rfmml-train)")
    for name in ("config.json", "split.json"):
        if not (run_dir / name).is_file():
            raise ExportError(
                f"{run_dir / name} is missing: {run_dir} is not a complete rfmml-train run folder"
            )
    path = Path(checkpoint) if Path(checkpoint).is_absolute() else run_dir / checkpoint
    if not path.is_file():
        others = sorted(p.name for p in run_dir.glob("*.pt"))
        hint = f"; checkpoints there: {', '.join(others)} (choose one with --checkpoint)" if others else ""
        raise ExportError(f"{run_dir} has no checkpoint {path.name} (expected {path}){hint}")
    return path


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


def load_inputs(
    run_dir: Path, checkpoint: str, data: Path | None, progress: bool, log: Callable[[str], None]
) -> RunInputs:
    """Load the run's model and decode its training and validation images."""
    from rfmml.trainer.data import default_cache_dir, load_part
    from rfmml.trainer.run import load_run

    run_dir = Path(run_dir)
    ckpt_path = check_run_folder(run_dir, checkpoint)
    loaded = load_run(run_dir, checkpoint=str(ckpt_path.resolve()))
    config, split = loaded.config, locate_data(loaded.split, data)
    backbone = config.backbone
    check_checkpoint(loaded.checkpoint, backbone, ckpt_path)
    model = loaded.model.cpu().eval()
    size = int(config.image_size)
    cache = None if config.cache_dir == "" else Path(config.cache_dir or default_cache_dir())
    log(f"run {run_dir} ({ckpt_path.name}, {backbone}); decoding training and validation images ...")
    train_images, train_labels = load_part(split, "train", size, cache_dir=cache)
    val_images, val_labels = load_part(split, "val", size, cache_dir=cache)
    if len(train_labels) == 0:
        raise ExportError(f"{run_dir / 'split.json'} lists no training images")
    state = loaded.checkpoint
    metadata = {
        "run": str(run_dir.resolve()),
        "checkpoint": ckpt_path.name,
        "phase": state.get("phase"),
        "episode": state.get("episode"),
        "backbone": backbone,
        "code_version": state.get("code_version"),
        "data_root": split.data_root,
    }
    return RunInputs(
        model=model,
        input_size=(size, size),
        backbone=backbone,
        split=split,
        train_images=train_images.numpy(),
        train_labels=train_labels.numpy().astype(np.int64),
        val_images=val_images.numpy(),
        val_labels=val_labels.numpy().astype(np.int64),
        config=config,
        metadata=metadata,
    )
