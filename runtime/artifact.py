"""The artifact contract between export and runtime: ``model.onnx`` + ``model.npz``.

Defined once, here; ``rfmml.export`` writes it with :func:`save_head`, the runtime reads it with
:func:`load_head`. The ``.npz`` holds only plain arrays (loads with ``allow_pickle=False``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfmml.runtime.errors import ArtifactError

FORMAT_VERSION = 1
DISTANCES = ("euclidean", "sqeuclidean")


@dataclass(frozen=True)
class Head:
    """Classifier head for embeddings of dimension D over C classes.

    prototypes: float32 [C, D]; svm_coef: float32 [C, D] or None; svm_intercept: float32 [C] or None;
    majority: bool [C]; train_counts: int64 [C]; input_size: (H, W) of the model's input.
    metadata: small JSON-able dict (parity report, run info), stored as a JSON string.
    """

    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    distance: str
    prototypes: np.ndarray
    majority: np.ndarray
    train_counts: np.ndarray
    svm_coef: np.ndarray | None = None
    svm_intercept: np.ndarray | None = None
    svm_l2_normalize: bool = True
    onnx_sha256: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def embedding_dim(self) -> int:
        return int(self.prototypes.shape[1])

    @property
    def has_svm(self) -> bool:
        return self.svm_coef is not None


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_head_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".npz")


@functools.cache
def umask_mode() -> int:
    """0o666 less the process umask: the mode an ordinary ``open(path, "w")`` would give (read once:
    reading the umask means setting it, so not on every write)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` all or nothing: ``write(tmp)`` fills a temp file in the same folder, which
    then gets ordinary permissions (mkstemp makes it 0600) and is renamed over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`), synced to disk."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)


def head_arrays(head: Head) -> dict[str, np.ndarray]:
    """The exact key -> array mapping stored in the .npz (the contract's keys and dtypes)."""
    if head.distance not in DISTANCES:
        raise ArtifactError(f"distance must be one of {DISTANCES}, got {head.distance!r}")
    n_classes = len(head.class_names)
    if head.prototypes.shape[0] != n_classes:
        raise ArtifactError(f"{head.prototypes.shape[0]} prototypes for {n_classes} classes")
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "class_names": np.array(head.class_names, dtype=np.str_),
        "input_size": np.array(head.input_size, dtype=np.int64),
        "embedding_dim": np.array(head.embedding_dim, dtype=np.int64),
        "distance": np.array(head.distance, dtype=np.str_),
        "prototypes": np.asarray(head.prototypes, dtype=np.float32),
        "majority": np.asarray(head.majority, dtype=bool),
        "train_counts": np.asarray(head.train_counts, dtype=np.int64),
        "onnx_sha256": np.array(head.onnx_sha256, dtype=np.str_),
        "metadata_json": np.array(json.dumps(head.metadata, sort_keys=True), dtype=np.str_),
    }
    if head.svm_coef is not None:
        if head.svm_intercept is None or head.svm_coef.shape != head.prototypes.shape:
            raise ArtifactError("svm_coef must be [C, D] like the prototypes, with an intercept [C]")
        arrays["svm_coef"] = np.asarray(head.svm_coef, dtype=np.float32)
        arrays["svm_intercept"] = np.asarray(head.svm_intercept, dtype=np.float32)
        arrays["svm_l2_normalize"] = np.array(bool(head.svm_l2_normalize))
    return arrays


def save_head(path: str | Path, head: Head) -> None:
    """Write ``head`` atomically to ``path`` (.npz, no pickled objects)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **head_arrays(head))
    atomic_write_bytes(path, buffer.getvalue())


REQUIRED_KEYS = (
    "format_version",
    "class_names",
    "input_size",
    "embedding_dim",
    "distance",
    "prototypes",
    "majority",
    "train_counts",
    "onnx_sha256",
)


def load_head(path: str | Path) -> Head:
    """Read a head .npz; raise ArtifactError (one line) when missing, corrupt or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"head file not found: {path} (export writes it beside model.onnx; point to it with --head)"
        )
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ArtifactError(f"{path}: not an rfmml head file (a single array, not an .npz archive)")
        with loaded as data:
            arrays = {key: data[key] for key in data.files}
    except ArtifactError:
        raise
    except (zlib.error, OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ArtifactError(f"{path}: not a readable rfmml head file ({error})") from None
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise ArtifactError(f"{path}: not an rfmml head file, missing keys {missing}")
    version = int(arrays["format_version"])
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: head format version {version}, this rfmml reads {FORMAT_VERSION}")
    has_svm = "svm_coef" in arrays
    try:
        head = _head_from_arrays(arrays, has_svm)
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise ArtifactError(f"{path}: malformed rfmml head file ({error})") from None
    _validate_head(head, path)
    return head


def _head_from_arrays(arrays: dict[str, np.ndarray], has_svm: bool) -> Head:
    return Head(
        class_names=tuple(str(name) for name in arrays["class_names"].tolist()),
        input_size=(int(arrays["input_size"][0]), int(arrays["input_size"][1])),
        distance=str(arrays["distance"]),
        prototypes=arrays["prototypes"].astype(np.float32),
        majority=arrays["majority"].astype(bool),
        train_counts=arrays["train_counts"].astype(np.int64),
        svm_coef=arrays["svm_coef"].astype(np.float32) if has_svm else None,
        svm_intercept=arrays["svm_intercept"].astype(np.float32) if has_svm else None,
        svm_l2_normalize=bool(arrays["svm_l2_normalize"]) if has_svm else True,
        onnx_sha256=str(arrays["onnx_sha256"]),
        metadata=json.loads(str(arrays["metadata_json"])) if "metadata_json" in arrays else {},
    )


def _validate_head(head: Head, path: str | Path) -> None:
    """Shape and value checks so that a damaged head fails at load time, not mid-scene."""
    n_classes = len(head.class_names)
    problems = []
    if n_classes < 1 or n_classes > 255:
        problems.append(f"{n_classes} classes (1..255 supported: 255 marks skipped tiles)")
    if head.prototypes.ndim != 2 or head.prototypes.shape[0] != n_classes:
        problems.append(f"prototypes shape {head.prototypes.shape} for {n_classes} classes")
    if head.distance not in DISTANCES:
        problems.append(f"distance {head.distance!r} not in {DISTANCES}")
    if min(head.input_size) < 1:
        problems.append(f"input_size {head.input_size}")
    if head.svm_coef is not None and (
        head.svm_coef.shape != head.prototypes.shape
        or head.svm_intercept is None
        or head.svm_intercept.shape != (n_classes,)
    ):
        problems.append("svm_coef/svm_intercept shapes do not match the prototypes")
    if not np.all(np.isfinite(head.prototypes)):
        problems.append("non-finite prototypes")
    if problems:
        raise ArtifactError(f"{path}: malformed rfmml head file ({'; '.join(problems)})")


def check_binding(model_path: str | Path, head: Head, head_path: str | Path) -> None:
    """Refuse a model file whose digest is not the one the head was exported with."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ArtifactError(f"model file not found: {model_path}")
    actual = sha256_file(model_path)
    if actual != head.onnx_sha256:
        raise ArtifactError(
            f"{head_path} does not belong to {model_path} (sha256 {actual[:12]}... but the head was "
            f"exported for {head.onnx_sha256[:12]}...): re-export the pair or pass the matching --head"
        )
