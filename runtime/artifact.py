"""The artifact contract between export and runtime: ``model.onnx`` + ``model.npz``.

Defined once, here: the graph's tensor names, the head kinds and the :class:`Head`; the head file's
keys, dtypes, shapes and limits, and their checks, in ``rfmml.runtime.artifact_schema``.
``rfmml.export`` writes the head with :func:`save_head`, the runtime reads it with :func:`load_head`,
which trusts nothing: the zip directory and every ``.npy`` header are checked before any array is
read (see ``rfmml.runtime.safe_npz``), then every value.

A head changed by ``rfmml-enroll`` carries its enrolment record (five ``enrolment_*`` arrays, one
entry per class added, replaced or removed); a head without one has exactly the keys of before, so
heads written before the record existed load unchanged and the format version stays 1 (a runtime
older than the record refuses an enrolled head naming the unknown ``enrolment_*`` member).

Format version 2 (issue 11): a calibrated Proto head (``rfmml-plus``) carries ``proto_centre`` [D]
(embeddings are centred on it and L2-normalised before the Proto distance; the prototypes are class
means in that space) and/or ``proto_tau`` (the prior correction ``-tau * log pi_k`` added to the
Proto scores, ``pi_k`` from ``train_counts``). Only such a head is written as version 2, so every
other head stays version 1 and loads in older runtimes; a version-1 runtime refuses a version-2 head
with one line instead of scoring it without its calibration. This runtime reads 1 and 2.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rfmml.runtime.artifact_schema import (
    ENROLMENT_KEYS,
    HEAD_SCHEMA,
    MAX_MEMBER_BYTES,
    check_headers,
    header_problems,
    refuse_problems,
    value_problems,
)
from rfmml.runtime.atomic_files import atomic_write_bytes
from rfmml.runtime.errors import ArtifactError
from rfmml.runtime.safe_npz import NpyHeader, read_npz

FORMAT_VERSION = 2  # the newest format written (a head without calibration is written as 1)
READ_VERSIONS = (1, 2)
INPUT_NAME = "images"  # uint8 [batch, H, W, 3], NHWC RGB, batch dynamic
OUTPUT_NAME = "embeddings"  # float32 [batch, D]
HEAD_KINDS = ("proto", "svm")


class Enrolment(NamedTuple):
    """One entry of a head's enrolment record: ``action`` ("add", "replace" or "remove") on class
    ``class_name`` with ``tiles`` tiles, ``sha256`` the digest of those tiles (see
    ``rfmml.runtime.enroll.tiles_digest``; both 0 and "" for a removal), ``date`` ISO 8601 UTC."""

    action: str
    class_name: str
    tiles: int
    sha256: str
    date: str


@dataclass(frozen=True)
class Head:
    """Classifier head for embeddings of dimension D over C classes.

    prototypes: float32 [C, D]; svm_coef: float32 [C, D] or None; svm_intercept: float32 [C] or None
    (-inf for a class that must never win); majority: bool [C]; train_counts: int64 [C]; input_size:
    (H, W) of the model's input. metadata: small JSON-able dict (parity report, run info), stored as a
    JSON string. enrolments: what ``rfmml-enroll`` changed since export, oldest first (empty: none).
    proto_centre: float32 [D] or None, proto_tau: float >= 0: the calibrated Proto head (see
    ``rfmml.runtime.heads``; None and 0 = the plain Proto head of format version 1).
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
    enrolments: tuple[Enrolment, ...] = ()
    proto_centre: np.ndarray | None = None
    proto_tau: float = 0.0

    @property
    def calibrated(self) -> bool:
        """Whether the Proto head is calibrated (centred + normalised, or prior-corrected): version 2."""
        return self.proto_centre is not None or bool(self.proto_tau)

    @property
    def embedding_dim(self) -> int:
        return int(self.prototypes.shape[1])

    @property
    def has_svm(self) -> bool:
        return self.svm_coef is not None

    @property
    def kinds(self) -> tuple[str, ...]:
        """The head kinds this file can score with: ("proto",) or ("proto", "svm")."""
        return HEAD_KINDS if self.has_svm else HEAD_KINDS[:1]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_head_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".npz")


def head_arrays(head: Head) -> dict[str, np.ndarray]:
    """The exact key -> array mapping stored in the .npz (the contract's keys and dtypes); raises
    ArtifactError for a head that :func:`load_head` would refuse."""
    if head.svm_coef is not None and head.svm_intercept is None:
        raise ArtifactError("svm_coef must be [C, D] like the prototypes, with an intercept [C]")
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION if head.calibrated else 1, dtype=np.int64),
        "class_names": np.array(head.class_names, dtype=np.str_).reshape(-1),
        "input_size": np.array(head.input_size, dtype=np.int64),
        "embedding_dim": np.array(np.shape(head.prototypes)[-1], dtype=np.int64),
        "distance": np.array(head.distance, dtype=np.str_),
        "prototypes": np.asarray(head.prototypes, dtype=np.float32),
        "majority": np.asarray(head.majority, dtype=bool),
        "train_counts": np.asarray(head.train_counts, dtype=np.int64),
        "onnx_sha256": np.array(head.onnx_sha256, dtype=np.str_),
        "metadata_json": np.array(json.dumps(head.metadata, sort_keys=True), dtype=np.str_),
    }
    if head.svm_coef is not None:
        arrays["svm_coef"] = np.asarray(head.svm_coef, dtype=np.float32)
        arrays["svm_intercept"] = np.asarray(head.svm_intercept, dtype=np.float32)
        arrays["svm_l2_normalize"] = np.array(bool(head.svm_l2_normalize))
    if head.proto_centre is not None:
        arrays["proto_centre"] = np.asarray(head.proto_centre, dtype=np.float32)
    if head.proto_tau:
        arrays["proto_tau"] = np.array(head.proto_tau, dtype=np.float64)
    if head.enrolments:
        arrays.update(_enrolment_arrays(head.enrolments))
    headers = {key: NpyHeader(a.shape, a.dtype, a.nbytes) for key, a in arrays.items()}
    refuse_problems("cannot write", header_problems(headers) or value_problems(arrays))
    return arrays


def _enrolment_arrays(enrolments: tuple[Enrolment, ...]) -> dict[str, np.ndarray]:
    """The record as plain arrays of E entries (text as unicode, tiles as int64)."""
    columns = list(zip(*enrolments, strict=True))
    arrays = {
        key: np.array(column, dtype=np.str_) for key, column in zip(ENROLMENT_KEYS, columns, strict=True)
    }
    arrays["enrolment_tiles"] = np.array(columns[2], dtype=np.int64)
    return arrays


def save_head(path: str | Path, head: Head) -> None:
    """Write ``head`` atomically to ``path`` (.npz, no pickled objects)."""
    buffer = io.BytesIO()
    np.savez(buffer, **head_arrays(head))
    atomic_write_bytes(path, buffer.getvalue())


def load_head(path: str | Path) -> Head:
    """Read a head .npz; raise ArtifactError (one line naming the file) when it is missing, not an
    rfmml head, or malformed: unknown keys, implausible declared sizes, pickled members, wrong dtypes
    or shapes, non-finite numbers. Memory use is bounded by the checked headers."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(
            f"head file not found: {path} (export writes it beside model.onnx; point to it with --head)"
        )
    arrays = read_npz(
        path,
        allowed_keys=HEAD_SCHEMA,
        check_headers=functools.partial(check_headers, path=path),
        max_member_bytes=MAX_MEMBER_BYTES,
        what="rfmml head file",
    )
    version = int(arrays["format_version"])
    if version not in READ_VERSIONS:
        raise ArtifactError(
            f"{path}: head format version {version}, this rfmml reads {', '.join(map(str, READ_VERSIONS))}"
            " (a newer rfmml wrote it: upgrade rfmml)"
        )
    refuse_problems(path, value_problems(arrays))
    return _head_from_arrays(arrays)


def _head_from_arrays(arrays: dict[str, np.ndarray]) -> Head:
    has_svm = "svm_coef" in arrays
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
        enrolments=_enrolments_from_arrays(arrays),
        proto_centre=arrays["proto_centre"].astype(np.float32) if "proto_centre" in arrays else None,
        proto_tau=float(arrays["proto_tau"]) if "proto_tau" in arrays else 0.0,
    )


def _enrolments_from_arrays(arrays: dict[str, np.ndarray]) -> tuple[Enrolment, ...]:
    if "enrolment_action" not in arrays:
        return ()
    columns = [arrays[key].tolist() for key in ENROLMENT_KEYS]
    return tuple(
        Enrolment(str(action), str(name), int(tiles), str(digest), str(date))
        for action, name, tiles, digest, date in zip(*columns, strict=True)
    )


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
