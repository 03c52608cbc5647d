"""Train/val/test splits: the imbalance protocol, and ``split.json`` (schema in DESIGN.md).

Protocol (per class, classes in sorted order, files in sorted order, one ``numpy.random.default_rng
(seed)`` consumed class after class): permute the class's files; the first E go to test, the next V to
validation, the next T to training. Minority classes (``--minority-classes K``: ``default_rng(seed +
100).choice(C, K, replace=False)``; or named) keep only the first S training images. This reproduces
the EuroSAT-LT protocol of ANCHORS.md exactly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfmml.runtime.imageio import is_image_file
from rfmml.trainer.errors import InputError

PARTS = ("train", "val", "test")
SYNTHETIC_PREFIX = "synthetic:"


@dataclass
class Split:
    """Class names in label order, majority/minority names, and per-part file lists per class."""

    data_root: str
    classes: list[str]
    majority: list[str]
    minority: list[str]
    seed: int
    train: dict[str, list[str]] = field(default_factory=dict)
    val: dict[str, list[str]] = field(default_factory=dict)
    test: dict[str, list[str]] = field(default_factory=dict)

    def part(self, part: str) -> dict[str, list[str]]:
        if part not in PARTS:
            raise ValueError(f"unknown part {part!r}")
        return getattr(self, part)

    def counts(self, part: str) -> dict[str, int]:
        return {c: len(self.part(part).get(c, [])) for c in self.classes}

    @property
    def is_synthetic(self) -> bool:
        return self.data_root.startswith(SYNTHETIC_PREFIX)

    def labels_and_paths(self, part: str) -> tuple[list[str], list[int]]:
        """(absolute paths, int labels) of one part, classes in label order, files in listed order.

        For the synthetic set the "paths" are the relative names (``class/index``).
        """
        paths: list[str] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            for rel in self.part(part).get(name, []):
                paths.append(rel if self.is_synthetic else os.path.join(self.data_root, rel))
                labels.append(label)
        return paths, labels

    def to_dict(self) -> dict:
        return {
            "data_root": self.data_root,
            "classes": self.classes,
            "majority": self.majority,
            "minority": self.minority,
            "seed": self.seed,
            "train": self.train,
            "val": self.val,
            "test": self.test,
        }

    def save(self, path: str | Path) -> None:
        from rfmml.runtime.atomic_files import atomic_write_bytes

        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a split.json; InputError (one line) when missing or malformed."""
        try:
            d = json.loads(Path(path).read_text())
            split = cls(
                data_root=str(d["data_root"]),
                classes=list(d["classes"]),
                majority=list(d["majority"]),
                minority=list(d["minority"]),
                seed=int(d["seed"]),
                train={k: list(v) for k, v in d["train"].items()},
                val={k: list(v) for k, v in d.get("val", {}).items()},
                test={k: list(v) for k, v in d.get("test", {}).items()},
            )
        except FileNotFoundError:
            raise InputError(f"split file not found: {path}") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InputError(f"{path}: not a valid split.json ({type(error).__name__}: {error})") from None
        check_split(split)
        return split


def check_split(split: Split) -> None:
    """Every class has at least 2 training images; majority/minority partition the classes."""
    if len(split.classes) < 2:
        raise InputError(f"need at least 2 classes, found {len(split.classes)}")
    if sorted(split.majority + split.minority) != sorted(split.classes):
        raise InputError("split: majority and minority must partition the classes")
    for name, count in split.counts("train").items():
        if count < 2:
            raise InputError(f"class {name!r} has {count} training image(s); every class needs at least 2")


def scan_folder(root: str | Path) -> dict[str, list[str]]:
    """ImageFolder layout: {class folder name: sorted image paths relative to root}."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data {root}: not a directory")
    found: dict[str, list[str]] = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            str(p.relative_to(root))
            for p in class_dir.rglob("*")
            if p.is_file() and is_image_file(p) and not p.name.startswith(".")
        )
        if files:
            found[class_dir.name] = files
    if not found:
        raise InputError(f"--data {root}: no class folders with images (JPEG, PNG or TIFF) found")
    if len(found) < 2:
        raise InputError(f"--data {root}: only one class ({next(iter(found))}); need at least 2")
    return found


def make_split(
    files: dict[str, list[str]],
    data_root: str,
    seed: int,
    train_frac: float | None = 0.5,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    test_per_class: int | None = None,
    minority_classes: int | None = None,
    minority: tuple[str, ...] | list[str] = (),
    minority_shots: int | None = None,
    minority_threshold: int = 20,
) -> Split:
    """Apply the protocol (module docstring) to ``files`` = {class: sorted relative paths}.

    Train count T = ``train_per_class`` or round(``train_frac`` * n). Val V and test E: as given; a
    missing one takes the rest; both missing: the rest is halved (val gets the smaller half).
    Without ``minority_shots`` (natural imbalance) minority = the named classes, or the classes with
    fewer than ``minority_threshold`` training images (none when that would be every class).
    """
    classes = sorted(files)
    _check_files(files, classes, minority)
    sizes = PartSizes(train_frac, train_per_class, val_per_class, test_per_class)
    parts = _partition(files, classes, seed, sizes)
    minority_set = _minority_classes(
        classes, parts["train"], seed, minority_classes, minority, minority_shots, minority_threshold
    )
    if minority_shots is not None:
        _keep_minority_shots(parts["train"], minority_set, minority_shots)
    split = Split(
        data_root=data_root,
        classes=classes,
        majority=[c for c in classes if c not in minority_set],
        minority=[c for c in classes if c in minority_set],
        seed=seed,
        **parts,
    )
    if not split.majority:
        raise InputError("every class is a minority class; name fewer (or lower --minority-threshold)")
    check_split(split)
    return split


@dataclass(frozen=True)
class PartSizes:
    """Images per class for each part: train T (``train_per_class``, else ``train_frac`` of the
    class), val V and test E (None: the rest, see :func:`make_split`)."""

    train_frac: float | None = 0.5
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None

    def counts(self, name: str, n: int) -> tuple[int, int, int]:
        """(T, V, E) for class ``name`` of ``n`` images; InputError when they do not fit."""
        t = (
            self.train_per_class
            if self.train_per_class is not None
            else max(2, round((self.train_frac or 0.5) * n))
        )
        e, v = self.test_per_class, self.val_per_class
        rest = n - t - (e or 0) - (v or 0)
        if rest < 0:
            raise InputError(
                f"class {name!r} has {n} images, fewer than train {t} + val {v or 0} + test {e or 0}"
            )
        if e is None and v is None:
            v, e = rest // 2, rest - rest // 2
        elif e is None:
            e = rest
        elif v is None:
            v = rest
        return t, v, e


def _check_files(files: dict[str, list[str]], classes: list[str], minority) -> None:
    unknown = [m for m in minority if m not in files]
    if unknown:
        raise InputError(f"--minority {unknown[0]!r} is not a class; classes: {', '.join(classes)}")
    for name in classes:
        if len(files[name]) < 2:
            raise InputError(f"class {name!r} has {len(files[name])} image(s); every class needs at least 2")


def _partition(
    files: dict[str, list[str]], classes: list[str], seed: int, sizes: PartSizes
) -> dict[str, dict[str, list[str]]]:
    """{part: {class: paths}}: one ``default_rng(seed)`` permutes each class in turn; the first E go
    to test, the next V to validation, the next T to training."""
    rng = np.random.default_rng(seed)
    parts: dict[str, dict[str, list[str]]] = {p: {} for p in PARTS}
    for name in classes:
        paths = files[name]
        order = rng.permutation(len(paths))
        t, v, e = sizes.counts(name, len(paths))
        shuffled = [paths[i] for i in order]
        parts["test"][name] = shuffled[:e]
        parts["val"][name] = shuffled[e : e + v]
        parts["train"][name] = shuffled[e + v : e + v + t]
    return parts


def _minority_classes(
    classes: list[str],
    train: dict[str, list[str]],
    seed: int,
    minority_classes: int | None,
    minority,
    minority_shots: int | None,
    minority_threshold: int,
) -> set[str]:
    """K drawn by ``default_rng(seed + 100)``, or the named ones, or (natural imbalance) the classes
    under ``minority_threshold`` training images unless that is every class."""
    if minority_classes is not None:
        if not 1 <= minority_classes < len(classes):
            raise InputError(f"--minority-classes must be in [1, {len(classes) - 1}]")
        picked = np.random.default_rng(seed + 100).choice(len(classes), minority_classes, replace=False)
        return {classes[i] for i in picked}
    if minority:
        return set(minority)
    if minority_shots is not None:
        raise InputError("--minority-shots needs --minority-classes K or --minority NAME")
    small = {c for c in classes if len(train[c]) < minority_threshold}
    return set() if len(small) == len(classes) else small  # all small: no imbalance to speak of


def _keep_minority_shots(train: dict[str, list[str]], minority: set[str], shots: int) -> None:
    """Cut each minority class's training list to its first ``shots`` images (in place)."""
    for name in sorted(minority):
        have = len(train[name])
        if shots > have:
            raise InputError(
                f"--minority-shots {shots} is larger than class {name!r} ({have} training images)"
            )
        train[name] = train[name][:shots]
