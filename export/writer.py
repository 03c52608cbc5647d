"""Atomic writing of model/head pairs: ``X.onnx`` + ``X.npz`` (same stem, same folder).

Every file of every pair is first written in full under a temporary name in the target folder,
``.<name>.rfmml-export.<host>.<pid>-<n>.tmp`` (``atomic_files.temporary_for``; the model with
``atomic_write_bytes``, the head with ``save_head``, the format's one implementation; both add a
temporary of that temporary while they write), the model's digest is checked on the bytes actually on
disk, and only then are the temporary files renamed onto their final names: models first, heads last. A
failure before the renames removes the temporary files and leaves the target folder as it was. Renames
are atomic and take microseconds; a crash between a model's rename and its head's rename leaves either
a model without a head or a new model beside an old head, and the runtime refuses both (head not found
/ digest mismatch), so a mixed pair can never be used silently.

A kill -9 leaves the temporaries behind; the next export writing to that folder removes those of its
own host whose process is gone (``atomic_files.remove_stale_temporaries``), and only those: the names
say which host and process wrote them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rfmml.runtime.artifact import Head, default_head_path, save_head, sha256_file
from rfmml.runtime.atomic_files import atomic_write_bytes, remove_stale_temporaries, temporary_for, umask_mode
from rfmml.runtime.errors import ExportError

TAG = "rfmml-export"  # names this command's temporaries (rfmml.runtime.atomic_files)


def pair_paths(model_path: str | Path) -> tuple[Path, Path]:
    """(model.onnx, model.npz) for a model path."""
    model_path = Path(model_path)
    return model_path, default_head_path(model_path)


def existing_targets(model_paths: Sequence[str | Path]) -> list[Path]:
    """The files of these pairs that already exist (what ``--force`` would overwrite)."""
    return [path for model in model_paths for path in pair_paths(model) if path.exists()]


def check_targets(model_paths: Sequence[str | Path], force: bool) -> None:
    """Before any work: ExportError (one line) when a pair could not be written at the end.

    Refused: an existing file without ``force``; a target that exists but is not a regular file (a
    folder: even ``--force`` replaces files only); a folder that cannot be created or written.
    """
    for path in [path for model in model_paths for path in pair_paths(model)]:
        if path.exists() and not path.is_file():
            raise ExportError(f"{path} exists and is not a file; choose another output name")
        if path.exists() and not force:
            raise ExportError(f"{path} exists; pass --force to overwrite")
        folder = _nearest_existing(path.parent)
        if not folder.is_dir():
            raise ExportError(f"cannot create {path.parent}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ExportError(f"cannot write to {folder} (permission denied): choose another output")


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def write_pairs(
    pairs: Sequence[tuple[str | Path, bytes, Head]], force: bool = False, started: float | None = None
) -> list[Head]:
    """Write every (model path, ONNX bytes, head) pair, all or nothing; return the heads as written.

    Each head is written with ``onnx_sha256`` set to the digest of its model's bytes. Raises
    FileExistsError (nothing written) when a target exists and ``force`` is False; OSError naming the
    final file (nothing written) when a file cannot be written. Stale temporaries
    of killed exports in the target folders are removed first (``started``: when this export began,
    ``time.time()``; default now).
    """
    if not force:
        existing = existing_targets([model for model, _, _ in pairs])
        if existing:
            raise FileExistsError(f"{existing[0]} exists; pass --force to overwrite")
    started = time.time() if started is None else started
    folders = sorted({Path(model).parent for model, _, _ in pairs})
    for folder in folders:
        remove_stale_temporaries(folder, TAG, started)
    created = [made for folder in folders for made in _make_folder(folder)]
    staged: list[tuple[Path, Path]] = []  # (temporary, final): models, then heads
    renamed = False
    try:
        heads = [_stage_pair(Path(model), data, head, staged) for model, data, head in pairs]
        staged.sort(key=lambda item: item[1].suffix == ".npz")  # every model before any head
        mode = umask_mode()  # temp files are created 0600; finished artifacts are ordinary files
        for tmp, final in staged:
            os.chmod(tmp, mode)
            os.replace(tmp, final)
        renamed = True
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if not renamed:  # nothing written: not even the folders this call created
            for folder in reversed(created):
                _remove_if_empty(folder)
    return heads


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, outermost first."""
    chain = [folder, *folder.parents]
    missing = chain[: chain.index(_nearest_existing(folder))]
    folder.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (another writer's file appeared) or already gone: leave it
        return


def _stage_pair(model_path: Path, data: bytes, head: Head, staged: list[tuple[Path, Path]]) -> Head:
    """Write one pair under temporary names (recorded in ``staged``); return the head as written."""
    model_path, head_path = pair_paths(model_path)
    digest = hashlib.sha256(data).hexdigest()
    tmp_model = temporary_for(model_path, TAG)
    staged.append((tmp_model, model_path))
    with _writing(model_path):
        atomic_write_bytes(tmp_model, data, TAG)
        if sha256_file(tmp_model) != digest:
            raise OSError(f"{tmp_model}: the bytes on disk differ from the exported model")
    head = dataclasses.replace(head, onnx_sha256=digest)
    tmp_head = temporary_for(head_path, TAG)
    staged.append((tmp_head, head_path))
    with _writing(head_path):
        save_head(tmp_head, head)
    return head


@contextmanager
def _writing(final: Path) -> Iterator[None]:
    """An OSError while staging ``final`` names ``final`` (not our temporary, nor no file at all: a
    failed write says only "No space left on device"); the caller removes the temporaries."""
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, os.fspath(final)) from error
