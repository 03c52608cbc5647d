"""Atomic writing of model/head pairs: ``X.onnx`` + ``X.npz`` (same stem, same folder).

Every file of every pair is first written in full under a temporary name in the target folder (the
model with ``rfmml.runtime.artifact.atomic_write_bytes``, the head with ``save_head``, the format's
one implementation), the model's digest is checked on the bytes actually on disk, and only then are
the temporary files renamed onto their final names: models first, heads last. A failure before the
renames removes the temporary files and leaves the target folder as it was. Renames are atomic and
take microseconds; a crash between a model's rename and its head's rename leaves either a model
without a head or a new model beside an old head, and the runtime refuses both (head not found /
digest mismatch), so a mixed pair can never be used silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from rfmml.runtime.artifact import (
    Head,
    atomic_write_bytes,
    default_head_path,
    save_head,
    sha256_file,
    umask_mode,
)


def pair_paths(model_path: str | Path) -> tuple[Path, Path]:
    """(model.onnx, model.npz) for a model path."""
    model_path = Path(model_path)
    return model_path, default_head_path(model_path)


def existing_targets(model_paths: Sequence[str | Path]) -> list[Path]:
    """The files of these pairs that already exist (what ``--force`` would overwrite)."""
    return [path for model in model_paths for path in pair_paths(model) if path.exists()]


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def write_pairs(pairs: Sequence[tuple[str | Path, bytes, Head]], force: bool = False) -> list[Head]:
    """Write every (model path, ONNX bytes, head) pair, all or nothing; return the heads as written.

    Each head is written with ``onnx_sha256`` set to the digest of its model's bytes. Raises
    FileExistsError (nothing written) when a target exists and ``force`` is False.
    """
    if not force:
        existing = existing_targets([model for model, _, _ in pairs])
        if existing:
            raise FileExistsError(f"{existing[0]} exists; pass --force to overwrite")
    staged: list[tuple[Path, Path]] = []  # (temporary, final), models first
    head_stage: list[tuple[Path, Path]] = []
    written: list[Head] = []
    try:
        for model_path, data, head in pairs:
            model_path, head_path = pair_paths(model_path)
            model_path.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256(data).hexdigest()
            tmp_model = _temp_name(model_path)
            atomic_write_bytes(tmp_model, data)
            staged.append((tmp_model, model_path))
            if sha256_file(tmp_model) != digest:
                raise OSError(f"{tmp_model}: the bytes on disk differ from the exported model")
            head = dataclasses.replace(head, onnx_sha256=digest)
            tmp_head = _temp_name(head_path)
            save_head(tmp_head, head)
            head_stage.append((tmp_head, head_path))
            written.append(head)
        mode = umask_mode()  # temp files are created 0600; finished artifacts are ordinary files
        for tmp, final in staged + head_stage:
            os.chmod(tmp, mode)
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged + head_stage:
            if tmp.exists():
                tmp.unlink()
    return written
