"""The artifact contract between export and runtime: ``model.onnx`` + ``model.npz``.

Defined once, here: the graph's tensor names, the distances and head kinds, the head file's keys,
dtypes and shapes. ``rfmml.export`` writes the head with :func:`save_head`, the runtime reads it with
:func:`load_head`, which trusts nothing: the zip directory and every ``.npy`` header are checked
before any array is read (see ``rfmml.runtime.safe_npz``), then every value.

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

from rfmml.runtime.atomic_files import atomic_write_bytes
from rfmml.runtime.errors import ArtifactError
from rfmml.runtime.safe_npz import NpyHeader, read_npz

FORMAT_VERSION = 2  # the newest format written (a head without calibration is written as 1)
READ_VERSIONS = (1, 2)
INPUT_NAME = "images"  # uint8 [batch, H, W, 3], NHWC RGB, batch dynamic
OUTPUT_NAME = "embeddings"  # float32 [batch, D]
DISTANCES = ("euclidean", "sqeuclidean")
HEAD_KINDS = ("proto", "svm")
MAX_CLASSES = 255  # class maps are uint8 and 255 marks a skipped tile
MAX_EMBEDDING_DIM = 1 << 16
MAX_INPUT_SIDE = 1 << 14
ENROLMENT_ACTIONS = ("add", "replace", "remove")
MAX_ENROLMENTS = 4096  # entries in one head's enrolment record


class _Spec(NamedTuple):
    """One key of the head file: accepted dtype kinds, shape ("C" classes, "D" embedding dim, "E"
    enrolment entries), and for text the longest string in characters."""

    kinds: str
    shape: tuple[int | str, ...]
    max_chars: int = 0


HEAD_SCHEMA: dict[str, _Spec] = {
    "format_version": _Spec("iu", ()),
    "class_names": _Spec("U", ("C",), 1024),
    "input_size": _Spec("iu", (2,)),
    "embedding_dim": _Spec("iu", ()),
    "distance": _Spec("U", (), 32),
    "prototypes": _Spec("f", ("C", "D")),
    "majority": _Spec("b", ("C",)),
    "train_counts": _Spec("iu", ("C",)),
    "onnx_sha256": _Spec("U", (), 128),
    "metadata_json": _Spec("U", (), 1 << 22),
    "svm_coef": _Spec("f", ("C", "D")),
    "svm_intercept": _Spec("f", ("C",)),
    "svm_l2_normalize": _Spec("b", ()),
    "proto_centre": _Spec("f", ("D",)),
    "proto_tau": _Spec("f", ()),
    "enrolment_action": _Spec("U", ("E",), 16),
    "enrolment_class": _Spec("U", ("E",), 1024),
    "enrolment_tiles": _Spec("iu", ("E",)),
    "enrolment_sha256": _Spec("U", ("E",), 64),
    "enrolment_date": _Spec("U", ("E",), 32),
}
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
SVM_KEYS = ("svm_coef", "svm_intercept", "svm_l2_normalize")
CALIBRATION_KEYS = ("proto_centre", "proto_tau")  # version 2 only
ENROLMENT_KEYS = (
    "enrolment_action",
    "enrolment_class",
    "enrolment_tiles",
    "enrolment_sha256",
    "enrolment_date",
)
# the largest member a valid head can hold: a float64 [C, D] array at the limits, or the metadata text
MAX_MEMBER_BYTES = max(MAX_CLASSES * MAX_EMBEDDING_DIM * 8, 4 * HEAD_SCHEMA["metadata_json"].max_chars) + 4096


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
    _refuse("cannot write", _header_problems(headers) or _value_problems(arrays))
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
        check_headers=functools.partial(_check_headers, path=path),
        max_member_bytes=MAX_MEMBER_BYTES,
        what="rfmml head file",
    )
    version = int(arrays["format_version"])
    if version not in READ_VERSIONS:
        raise ArtifactError(
            f"{path}: head format version {version}, this rfmml reads {', '.join(map(str, READ_VERSIONS))}"
            " (a newer rfmml wrote it: upgrade rfmml)"
        )
    _refuse(path, _value_problems(arrays))
    return _head_from_arrays(arrays)


def _refuse(prefix: str | Path, problems: list[str]) -> None:
    """One ArtifactError line listing every problem found (none: return)."""
    if problems:
        raise ArtifactError(f"{prefix}: malformed rfmml head file ({'; '.join(problems)})")


def _check_headers(headers: dict[str, NpyHeader], path: Path) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in headers]
    if missing:
        raise ArtifactError(f"{path}: not an rfmml head file, missing keys {missing}")
    _refuse(path, _header_problems(headers))


def _header_problems(headers: dict[str, NpyHeader]) -> list[str]:
    """Problems with the declared dtypes and shapes (nothing read yet): C from class_names, D from
    the prototypes, every other shape must follow from them."""
    for group in (SVM_KEYS, ENROLMENT_KEYS):
        found = [key for key in group if key in headers]
        if found and len(found) != len(group):
            return [f"{', '.join(group)} go together, found only {', '.join(found)}"]
    names, prototypes = headers["class_names"].shape, headers["prototypes"].shape
    if len(names) != 1 or not 1 <= names[0] <= MAX_CLASSES:
        return [f"class_names of shape {names} (1..{MAX_CLASSES} classes: 255 marks skipped tiles)"]
    if len(prototypes) != 2 or not 1 <= prototypes[1] <= MAX_EMBEDDING_DIM:
        return [f"prototypes of shape {prototypes} (expected [C, D] with D <= {MAX_EMBEDDING_DIM})"]
    dims = {"C": names[0], "D": prototypes[1]}
    if "enrolment_class" in headers:
        entries = headers["enrolment_class"].shape
        if len(entries) != 1 or not 1 <= entries[0] <= MAX_ENROLMENTS:
            return [f"enrolment_class of shape {entries} (1..{MAX_ENROLMENTS} entries)"]
        dims["E"] = entries[0]
    problems = []
    for key, header in headers.items():
        spec = HEAD_SCHEMA[key]
        expected = tuple(dims[d] if isinstance(d, str) else d for d in spec.shape)
        if header.shape != expected:
            problems.append(f"{key} of shape {header.shape}, expected {expected}")
        if header.dtype.kind not in spec.kinds or header.dtype.itemsize > max(8, 4 * spec.max_chars):
            problems.append(f"{key} of dtype {header.dtype}")
    return problems


def _value_problems(arrays: dict[str, np.ndarray]) -> list[str]:
    """Problems with the values, so that a damaged head fails at load time, not mid-scene."""
    names = arrays["class_names"].tolist()
    problems = []
    if "" in names or len(set(names)) != len(names):
        problems.append("class names must be unique and non-empty")
    if str(arrays["distance"]) not in DISTANCES:
        problems.append(f"distance {str(arrays['distance'])!r} not in {DISTANCES}")
    if int(arrays["embedding_dim"]) != arrays["prototypes"].shape[1]:
        problems.append(
            f"embedding_dim {int(arrays['embedding_dim'])} for prototypes {arrays['prototypes'].shape}"
        )
    if not all(1 <= side <= MAX_INPUT_SIDE for side in arrays["input_size"].tolist()):
        problems.append(f"input_size {arrays['input_size'].tolist()} (sides 1..{MAX_INPUT_SIDE})")
    if not np.all(np.isfinite(arrays["prototypes"])):
        problems.append("non-finite prototypes")
    if np.any(arrays["train_counts"] < 0):
        problems.append("negative train_counts")
    if "svm_coef" in arrays:
        problems += _svm_problems(arrays["svm_coef"], arrays["svm_intercept"])
    problems += _calibration_problems(arrays)
    if "enrolment_action" in arrays:
        problems += _enrolment_problems(arrays)
    if "metadata_json" in arrays and not _is_json_object(str(arrays["metadata_json"])):
        problems.append("metadata_json is not a JSON object")
    return problems


def _svm_problems(coef: np.ndarray, intercept: np.ndarray) -> list[str]:
    """The SVM must give every tile a real score: finite weights; intercepts finite or -inf (a class
    absent from training, which never wins), and not all -inf."""
    problems = []
    if not np.all(np.isfinite(coef)):
        problems.append("non-finite svm_coef")
    if np.any(np.isnan(intercept) | (intercept == np.inf)) or not np.any(np.isfinite(intercept)):
        problems.append("svm_intercept must be finite (or -inf for a class that never wins)")
    return problems


def _calibration_problems(arrays: dict[str, np.ndarray]) -> list[str]:
    """A calibrated Proto head is version 2 with a finite centre and a finite tau >= 0; a version-2
    head without calibration is refused too (the version says what a reader must apply)."""
    present = [key for key in CALIBRATION_KEYS if key in arrays]
    version = int(arrays["format_version"])
    if bool(present) != (version == 2):
        return [f"format_version {version} with {', '.join(present) or 'no proto_centre/proto_tau'}"]
    problems = []
    if "proto_centre" in arrays and not np.all(np.isfinite(arrays["proto_centre"])):
        problems.append("non-finite proto_centre")
    if "proto_tau" in arrays and not (np.isfinite(arrays["proto_tau"]) and float(arrays["proto_tau"]) >= 0):
        problems.append("proto_tau must be finite and >= 0")
    return problems


def _enrolment_problems(arrays: dict[str, np.ndarray]) -> list[str]:
    """The record must say what was done: known actions, non-negative tile counts."""
    problems = []
    if not set(arrays["enrolment_action"].tolist()) <= set(ENROLMENT_ACTIONS):
        problems.append(f"enrolment_action not in {ENROLMENT_ACTIONS}")
    if np.any(arrays["enrolment_tiles"] < 0):
        problems.append("negative enrolment_tiles")
    return problems


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


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
