"""The head file's schema and the checks against it: keys, dtypes, shapes ("C" classes, "D"
embedding dim, "E" enrolment entries), limits, and the problems of a head's declared headers (before
anything is read) and of its values, so that a damaged head fails at load time, not mid-scene.

``rfmml.runtime.artifact`` writes and reads heads with these checks (:func:`header_problems` and
:func:`value_problems` on both sides, :func:`check_headers` on the zip's headers before any array is
read, :func:`refuse_problems` for the one-line error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rfmml.runtime.errors import ArtifactError
from rfmml.runtime.safe_npz import NpyHeader

DISTANCES = ("euclidean", "sqeuclidean")
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


def refuse_problems(prefix: str | Path, problems: list[str]) -> None:
    """One ArtifactError line listing every problem found (none: return)."""
    if problems:
        raise ArtifactError(f"{prefix}: malformed rfmml head file ({'; '.join(problems)})")


def check_headers(headers: dict[str, NpyHeader], path: Path) -> None:
    """Refuse a file that lacks a required key or whose declared headers have problems."""
    missing = [key for key in REQUIRED_KEYS if key not in headers]
    if missing:
        raise ArtifactError(f"{path}: not an rfmml head file, missing keys {missing}")
    refuse_problems(path, header_problems(headers))


def header_problems(headers: dict[str, NpyHeader]) -> list[str]:
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


def value_problems(arrays: dict[str, np.ndarray]) -> list[str]:
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
