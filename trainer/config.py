"""Training configuration: one frozen dataclass of every setting, each declared once, JSON round-trippable.

Every field is declared with :func:`~rfmml.trainer.config_fields.setting`: its click type (the range;
the names and ranges are in ``rfmml.trainer.config_rules``), help and help section. ``rfmml-train``
builds its options from these declarations and passes the parsed values straight to
``TrainConfig(**values)``; :meth:`TrainConfig.from_dict` (``config.json``) and :func:`validate` (any
config) check values with the very same types, and ``config_rules.check_combinations`` the checks that
involve two settings.

Fields left as ``None`` are resolved by ``rfmml.trainer.config_defaults.resolve_defaults`` before
training. ``config.json`` holds the resolved config, so a run can be rebuilt from it alone
(:func:`read_config`).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from rfmml.runtime.artifact_schema import DISTANCES
from rfmml.runtime.errors import InputError
from rfmml.trainer.config_defaults import (
    DEFAULT_METHOD,
    DEFAULT_TRAIN_FRAC,
    HEAD_EMBED_DIM,
    PAPER_DEFAULTS,
    PAPER_METHOD,
)
from rfmml.trainer.config_fields import (
    CROSS_ENTROPY,
    EPISODIC,
    HEADS,
    MODEL,
    PLUMBING,
    RUN,
    SPLIT,
    BackboneName,
    FiniteFloat,
    check_value,
    flag_name,
    setting,
)
from rfmml.trainer.config_rules import (
    BATCH,
    DEVICES,
    EPISODE_COUNT,
    EVERY_EPISODES,
    EVERY_EPOCHS,
    FILE,
    FOLDER,
    IMAGE_SIZE_MAX,
    INT_0_UP,
    INT_2_UP,
    METHODS,
    PLUS_METHOD,
    POSITIVE,
    PRESETS,
    PROTO_HEADS,
    RUN_FOLDER,
    SEED_MAX,
    SVM_CLASS_WEIGHTS,
    TUNES,
    check_combinations,
)


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, in the order and sections of ``rfmml-train --help``."""

    out: str = setting(help="Run folder to create.", section=RUN, type=RUN_FOLDER, metavar="RUN")
    data: str | None = setting(
        None,
        help="ImageFolder root (one folder of images per class).",
        section=RUN,
        type=FOLDER,
        default_text="the embedded synthetic set",
        metavar="DIR",
    )
    method: str | None = setting(
        None,
        help="rfmml-plus (RF-MML+: RET + ACF with the calibrated Proto head, and with --tune head a "
        "short RET and a long ACF; it beat every baseline on EuroSAT-LT, RESULTS.md); rfmml (the "
        "paper's RET + ACF); ablations rfmml-no-ret, rfmml-no-acf; protonet (fixed all-class "
        "episodes); cross-entropy baselines with a linear layer: plain, reweight, resample, "
        "logit-adjust; frozen (no training: the pretrained features with the Proto and SVM heads).",
        section=RUN,
        type=click.Choice(METHODS),
        default_text=f"{DEFAULT_METHOD}; --preset paper: {PAPER_METHOD}",
        metavar="METHOD",
    )
    seed: int = setting(
        0,
        help="Seeds the split, the initial weights and the episodes.",
        section=RUN,
        type=click.IntRange(0, SEED_MAX),
    )
    preset: str | None = setting(
        None,
        help="paper: the paper's setting in one flag: its method (rfmml), wide_resnet50_2 with ImageNet "
        "weights (from torchvision's cache, or a download where allowed; offline: --weights FILE), 224 "
        "px, 80,000 RET + 2,000 ACF episodes at lr 5e-6 / 1e-6, --tune all. Flags given beside it win.",
        section=RUN,
        type=click.Choice(PRESETS),
        default_text=f"{DEFAULT_METHOD}, efficientnet_lite0 ImageNet weights (packaged, offline), 128 px, "
        "--tune head",
    )
    augment: bool | None = setting(
        None,
        help="Random flips and 90-degree rotations (every method). With --tune head the 8 flipped and "
        "rotated views of every training image are cached: 8 times the feature extraction.",
        section=RUN,
        default_text="augment; --tune head: no (measured: no gain for 8x the extraction)",
    )
    split: str | None = setting(
        None, help="Reuse a split.json (then no other split flag).", section=SPLIT, type=FILE, metavar="FILE"
    )
    train_frac: float | None = setting(
        None,
        help="Training fraction per class.",
        section=SPLIT,
        type=FiniteFloat(0, 1, min_open=True, max_open=True),
        default_text=f"{DEFAULT_TRAIN_FRAC}",
    )
    train_per_class: int | None = setting(
        None, help="Training images per class (instead of --train-frac).", section=SPLIT, type=INT_2_UP
    )
    val_per_class: int | None = setting(
        None,
        help="Validation images per class.",
        section=SPLIT,
        type=INT_0_UP,
        default_text="the rest, or half of it",
    )
    test_per_class: int | None = setting(
        None,
        help="Test images per class.",
        section=SPLIT,
        type=INT_0_UP,
        default_text="the rest, or half of it",
    )
    minority_classes: int | None = setting(
        None, help="Draw this many minority classes with the seed.", section=SPLIT, type=click.IntRange(min=1)
    )
    minority: tuple[str, ...] = setting(
        (), help="A minority class by name (repeatable).", section=SPLIT, metavar="NAME"
    )
    minority_shots: int | None = setting(
        None, help="Training images kept per minority class.", section=SPLIT, type=INT_2_UP
    )
    minority_threshold: int = setting(
        20,
        help="Natural imbalance: classes with fewer training images are minority.",
        section=SPLIT,
        type=INT_2_UP,  # below 2 no class is minority and N_max would be < 2
    )
    backbone: str | None = setting(
        None,
        help="Embedding network, e.g. conv4, resnet18, efficientnet_lite0, wide_resnet50_2, or timm:<name> "
        "for any timm model (a wrong name lists them all).",
        section=MODEL,
        type=BackboneName(),
        metavar="NAME",
    )
    pretrained: bool | None = setting(
        None, help="ImageNet weights (unless conv4, --weights or --init).", section=MODEL
    )
    weights: str | None = setting(
        None, help="Backbone state-dict file.", section=MODEL, type=FILE, metavar="FILE"
    )
    init: str | None = setting(
        None,
        help="Start the backbone from this run's best.pt.",
        section=MODEL,
        type=RUN_FOLDER,
        metavar="RUN",
    )
    image_size: int | None = setting(
        None,
        help="Square input size in pixels.",
        section=MODEL,
        type=click.IntRange(8, IMAGE_SIZE_MAX),
        default_text="128 for efficientnet_lite0, else 224; synthetic: 32",
    )
    tune: str | None = setting(
        None,
        help="What trains: all (the whole network, the paper); last (the backbone's last stage and the "
        "head); head (a linear head on the frozen backbone's cached features: minutes on a CPU).",
        section=MODEL,
        type=click.Choice(TUNES),
        default_text="head with pretrained weights, else all; synthetic: all",
    )
    embed_dim: int | None = setting(
        None,
        help="Width of the trainable linear head on the backbone's pooled features.",
        section=MODEL,
        type=click.IntRange(1, 65_536),
        default_text=f"{HEAD_EMBED_DIM} with --tune head (cross-entropy: no projection), else no head",
    )
    distance: str = setting(
        "euclidean",
        help="Distance to the prototypes: the paper's euclidean or ProtoNet's sqeuclidean.",
        section=MODEL,
        type=click.Choice(DISTANCES),
    )
    ret_episodes: int | None = setting(
        None, help="RET episodes (majority classes).", section=EPISODIC, type=EPISODE_COUNT
    )
    acf_episodes: int | None = setting(
        None, help="ACF episodes (all classes).", section=EPISODIC, type=EPISODE_COUNT
    )
    queries: int = setting(
        5, help="Query images per class.", section=EPISODIC, type=click.IntRange(1, 10_000)
    )
    n_max: int | None = setting(
        None,
        help="N_max: support shots are drawn from [1, N_max).",
        section=EPISODIC,
        type=INT_2_UP,
        default_text="the smallest minority training count",
    )
    ret_lr: float | None = setting(None, help="RET Adam learning rate.", section=EPISODIC, type=POSITIVE)
    acf_lr: float | None = setting(None, help="ACF Adam learning rate.", section=EPISODIC, type=POSITIVE)
    val_every: int | None = setting(
        None,
        help="Validate (keeping the best weights) every this many episodes.",
        section=EPISODIC,
        type=EVERY_EPISODES,
    )
    log_every: int | None = setting(
        None, help="Log every this many episodes.", section=EPISODIC, type=EVERY_EPISODES
    )
    epochs: int | None = setting(None, help="Epochs.", section=CROSS_ENTROPY, type=EVERY_EPOCHS)
    lr: float | None = setting(None, help="Adam learning rate.", section=CROSS_ENTROPY, type=POSITIVE)
    lr_step: int | None = setting(
        None,
        help="Divide the learning rate by 5 every this many epochs.",
        section=CROSS_ENTROPY,
        type=EVERY_EPOCHS,
    )
    ce_batch: int = setting(64, help="Batch size.", section=CROSS_ENTROPY, type=BATCH)
    la_tau: float = setting(
        1.0,
        help="logit-adjust: strength tau of the adjustment.",
        section=CROSS_ENTROPY,
        type=FiniteFloat(min=0),
    )
    svm_c: tuple[float, ...] = setting(
        (0.01, 0.1, 1.0, 10.0),
        help="SVM C grid (repeatable), chosen on validation.",
        section=HEADS,
        type=POSITIVE,
    )
    svm_class_weight: str = setting(
        "balanced",
        help="SVM class weights: balanced (inverse class frequency) or none.",
        section=HEADS,
        type=click.Choice(SVM_CLASS_WEIGHTS),
    )
    svm_l2_normalize: bool = setting(True, help="L2-normalise the embeddings before the SVM.", section=HEADS)
    proto_head: str | None = setting(
        None,
        help="Proto head: plain (the paper's: nearest class mean) or calibrated (embeddings centred "
        "and L2-normalised, prior correction -tau log pi_k with tau chosen on validation; it also "
        "picks the best checkpoint).",
        section=HEADS,
        type=click.Choice(PROTO_HEADS),
        default_text="calibrated for rfmml-plus, else plain",
    )
    batch_size: int = setting(256, help="Batch size for embedding (evaluation).", section=HEADS, type=BATCH)
    device: str = setting(
        "auto", help="Training device.", section=PLUMBING, type=click.Choice(DEVICES), resume=True
    )
    workers: int = setting(
        0,
        help="Decode threads (0: one per CPU, at most 16).",
        section=PLUMBING,
        type=click.IntRange(0, 256),
        resume=True,
    )
    threads: int | None = setting(
        None,
        help="torch CPU threads (0: torch's default).",
        section=PLUMBING,
        type=click.IntRange(0, 1024),
        resume=True,
    )
    cache_dir: str | None = setting(
        None,
        help="Decoded-image cache.",
        section=PLUMBING,
        type=click.Path(file_okay=False),
        default_text="$RFMML_CACHE or ~/.cache/rfmml",
        metavar="DIR",
        resume=True,
    )  # "" disables the cache (--no-cache)
    progress: bool = setting(True, help="Progress bars.", section=PLUMBING, resume=True)
    deterministic: bool = setting(
        False,
        help="CUDA: deterministic algorithms (torch.use_deterministic_algorithms and the cuBLAS "
        "workspace setting), so that --resume repeats a GPU run bit for bit; slower. CPU runs are "
        "deterministic anyway.",
        section=PLUMBING,
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        """Inverse of :meth:`to_dict`, every value checked as its flag is; a missing key takes its
        default. InputError ``"<source>: <key>: <why>"`` for an unknown key (another version wrote it),
        a value of the wrong type or out of range, or settings that cannot work together."""
        if not isinstance(d, dict):
            raise InputError(f"{source}: not a JSON object")
        unknown = sorted(set(d) - set(SETTINGS))
        if unknown:
            raise InputError(f"{source}: unknown config keys {unknown}")
        if "out" not in d:
            raise InputError(f"{source}: out: missing")
        values = {k: check_value(SETTINGS[k], HINTS[k], v, f"{source}: {k}") for k, v in d.items()}
        config = cls(**values)
        try:
            check_combinations(config)
        except InputError as error:
            raise InputError(f"{source}: {error}") from None
        return config

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def synthetic(self) -> bool:
        return self.data is None

    @property
    def calibrated_proto(self) -> bool:
        """Whether the Proto head is the calibrated one (--proto-head; unset, as in a config.json
        written before the option: calibrated for rfmml-plus only). Read it on a resolved config:
        an unset --method (resolve_defaults picks it) counts as not rfmml-plus."""
        return (self.proto_head or ("calibrated" if self.method == PLUS_METHOD else "plain")) == "calibrated"


SETTINGS = {item.name: item for item in fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)


def validate(config: TrainConfig) -> None:
    """Raise InputError (one line) for a value its flag would refuse, or settings that cannot work
    together. Catches configs built in Python; the command line and config.json are checked earlier."""
    for name, item in SETTINGS.items():
        check_value(item, HINTS[name], getattr(config, name), flag_name(name))
    check_combinations(config)


def read_config(run_dir: str | Path) -> TrainConfig:
    """The config of the run in ``run_dir`` (its config.json), every value checked as its flag is.

    InputError (one line naming the file and the key) for a folder without config.json, unreadable
    JSON, a bad value, or a config that lacks a resolved setting (not written by rfmml-train).
    """
    path = Path(run_dir) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{run_dir}: not a run folder (no config.json)") from None
    except (OSError, ValueError) as error:  # unreadable file, bad UTF-8, bad JSON
        raise InputError(f"{path}: unreadable config ({error})") from None
    if isinstance(raw, dict) and "tune" not in raw:  # written before --tune: the whole network trained
        raw = {**raw, "tune": "all"}
    config = TrainConfig.from_dict(raw, source=str(path))
    unresolved = [k for k in ("method", *PAPER_DEFAULTS) if getattr(config, k) is None]
    if unresolved:
        raise InputError(f"{path}: {unresolved[0]}: missing (not a config.json written by rfmml-train)")
    return config
