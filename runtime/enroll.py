"""Enrolment: add, replace or remove classes of an exported head on the edge box, runtime alone.

A metric-learning head is a list of prototypes, so a new class is a new prototype: the mean of the
onnxruntime embeddings of its tiles (:func:`rfmml.runtime.enroll_tiles.mean_prototype`, bit for bit the
mean export computes), scored with the distance the head declares. numpy + onnxruntime + Pillow only:
nothing here imports torch or scikit-learn.

What an enrolment changes, and the decisions behind it:

- order: the classes keep their order; a replaced class keeps its place, added ones are appended in
  the order given, removed ones drop out (applied last, so the head never shrinks below 2 classes on
  the way); every name is checked against the head before any tile is read;
- ``train_counts`` of an enrolled class = its number of tiles; it is a *minority* class unless that
  count reaches the smallest count among the head's majority classes (the imbalance protocol splits
  by count, and a handful of tiles is the minority regime);
- the SVM part is dropped with a one-line warning (it cannot be refitted without the training
  embeddings, and an SVM that ignores the new class would be wrong): the Proto head serves. The
  metadata's ``svm`` entry goes with it; the rest of the metadata (run, parity) is kept;
- the head stays bound to the same model digest, and every change is appended to its enrolment record
  (:class:`rfmml.runtime.artifact.Enrolment`: action, class, tiles, their digest, date).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from rfmml.runtime.artifact import Enrolment, Head
from rfmml.runtime.artifact_schema import HEAD_SCHEMA, MAX_CLASSES
from rfmml.runtime.enroll_tiles import ImageSource, mean_prototype, read_tiles
from rfmml.runtime.errors import InputError
from rfmml.runtime.heads import proto_space

if TYPE_CHECKING:
    from rfmml.runtime.classifier import Classifier

MIN_CLASSES = 2  # a head that can only ever answer one class classifies nothing
SVM_NOTICE = "the SVM part of the head is dropped (it cannot follow an enrolment): the Proto head serves"


@dataclass(frozen=True)
class EnrolPlan:
    """What to change: ``adds`` and ``replaces`` are (class name, images) pairs (images: a folder,
    image files or uint8 pixels, see :func:`rfmml.runtime.enroll_tiles.read_tiles`); ``removes``
    class names."""

    adds: tuple[tuple[str, ImageSource], ...] = ()
    replaces: tuple[tuple[str, ImageSource], ...] = ()
    removes: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.adds] + [name for name, _ in self.replaces] + list(self.removes)


def utc_now() -> str:
    """The record's date: ISO 8601 UTC to the second, e.g. 2026-11-29T03:20:20Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_name(name: str) -> None:
    limit = HEAD_SCHEMA["class_names"].max_chars
    if not name or name != name.strip() or len(name) > limit:
        raise InputError(f"bad class name {name!r}: 1..{limit} characters, no leading or trailing spaces")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InputError(f"bad class name {name!r}: no control characters")


def _unknown(head: Head, name: str) -> InputError:
    return InputError(f"no class {name!r} in the head (its classes: {', '.join(head.class_names)})")


def check_plan(head: Head, plan: EnrolPlan) -> None:
    """Refuse a plan that cannot apply to ``head`` (InputError, one line), before any tile is read:
    nothing to do, a bad or repeated name, adding a class the head has (without replace), replacing or
    removing one it has not, or a result with fewer than 2 or more than 255 classes."""
    names = plan.names
    if not names:
        raise InputError("nothing to do: give --add NAME DIR, --replace NAME DIR or --remove NAME")
    for name in names:
        _check_name(name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"class {', '.join(map(repr, repeated))} given more than once")
    known = head.class_names
    present = [name for name, _ in plan.adds if name in known]
    if present:
        raise InputError(
            f"class {present[0]!r} is already in the head: use --replace {present[0]} DIR to recompute it"
        )
    absent = [name for name in [n for n, _ in plan.replaces] + list(plan.removes) if name not in known]
    if absent:
        raise _unknown(head, absent[0])
    count = len(known) - len(plan.removes) + len(plan.adds)
    if count < MIN_CLASSES:
        raise InputError(
            f"removing {', '.join(plan.removes)} would leave {count} class(es): a head needs at least "
            f"{MIN_CLASSES}"
        )
    if count > MAX_CLASSES:
        raise InputError(
            f"the head would have {count} classes, more than the {MAX_CLASSES} a class map holds"
        )


def enrol(clf: Classifier, plan: EnrolPlan, *, date: str | None = None) -> Head:
    """The head of ``clf`` changed by ``plan``: the plan is checked, then every class's tiles are
    read and embedded (any failure: nothing changed), then the changes applied in order. ``date``
    (default: now, UTC) goes into the enrolment record. Warns once when an SVM part is dropped."""
    check_plan(clf.head, plan)
    tiles = {name: read_tiles(images, clf.input_size) for name, images in (*plan.replaces, *plan.adds)}
    centre = clf.head.proto_centre  # a calibrated head's prototypes live in its centred, unit space
    prototypes = {
        name: mean_prototype(proto_space(clf.embed(class_tiles.pixels), centre))
        for name, class_tiles in tiles.items()
    }
    if clf.head.has_svm:
        warnings.warn(SVM_NOTICE, stacklevel=2)
    date = date or utc_now()
    head = clf.head
    for action, pairs in (("replace", plan.replaces), ("add", plan.adds)):
        for name, _ in pairs:
            head = set_class(
                head, action, name, prototypes[name], tiles[name].count, tiles[name].sha256, date
            )
    for name in plan.removes:
        head = remove_class(head, name, date)
    return head


def _is_majority(head: Head, name: str, tiles: int) -> bool:
    """Majority when ``tiles`` reaches the smallest training count of the head's other majority
    classes (none: minority)."""
    others = head.majority & (np.array(head.class_names) != name)
    return bool(others.any()) and tiles >= int(head.train_counts[others].min())


def set_class(
    head: Head, action: str, name: str, prototype: np.ndarray, tiles: int, sha256: str, date: str
) -> Head:
    """``head`` with class ``name`` added (appended) or replaced (in place) by ``prototype``
    float32 [D] fitted on ``tiles`` tiles of digest ``sha256``; no SVM part; recorded."""
    names = list(head.class_names)
    index = names.index(name) if action == "replace" else len(names)
    if action == "add":
        names.append(name)
    prototypes = np.array(head.prototypes, dtype=np.float32)
    majority = np.array(head.majority, dtype=bool)
    counts = np.array(head.train_counts, dtype=np.int64)
    if action == "add":
        prototypes = np.concatenate([prototypes, np.zeros((1, prototypes.shape[1]), np.float32)])
        majority, counts = np.append(majority, False), np.append(counts, 0)
    prototypes[index] = prototype
    majority[index] = _is_majority(head, name, tiles)
    counts[index] = tiles
    record = Enrolment(action, name, int(tiles), sha256, date)
    return _changed(head, record, class_names=tuple(names), prototypes=prototypes, majority=majority,
                    train_counts=counts)  # fmt: skip


def remove_class(head: Head, name: str, date: str) -> Head:
    """``head`` without class ``name`` (it is never predicted again); no SVM part; recorded."""
    keep = np.array([n != name for n in head.class_names])
    if keep.all():
        raise _unknown(head, name)
    if keep.sum() < MIN_CLASSES:
        raise InputError(f"removing {name} would leave {int(keep.sum())} class(es): a head needs at least 2")
    return _changed(
        head,
        Enrolment("remove", name, 0, "", date),
        class_names=tuple(n for n in head.class_names if n != name),
        prototypes=np.asarray(head.prototypes, np.float32)[keep],
        majority=np.asarray(head.majority, bool)[keep],
        train_counts=np.asarray(head.train_counts, np.int64)[keep],
    )


def _changed(head: Head, record: Enrolment, **fields) -> Head:
    """``head`` with ``fields`` replaced, the SVM part and its metadata dropped, ``record`` appended."""
    metadata = {key: value for key, value in head.metadata.items() if key != "svm"}
    return dataclasses.replace(
        head, **fields, svm_coef=None, svm_intercept=None, svm_l2_normalize=True, metadata=metadata,
        enrolments=(*head.enrolments, record),
    )  # fmt: skip
