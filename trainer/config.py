"""Training configuration: one frozen dataclass of every setting, each declared once, JSON round-trippable.

Every field is declared with :func:`~rfmml.trainer.config_fields.setting`: its click type (the range),
help and help section. ``rfmml-train`` builds its options from these declarations and passes the parsed
values straight to ``TrainConfig(**values)``; :meth:`TrainConfig.from_dict` (``config.json``) and
:func:`validate` (any config) check values with the very same types. :func:`validate` adds the checks
that involve two settings.

Fields left as ``None`` are resolved by :func:`resolve_defaults` before training: for real data the
offline default (DATA_DEFAULTS: efficientnet_lite0's packaged ImageNet weights at 128 px, ``--tune
head`` with HEAD_BUDGET), the paper's values with ``--preset paper`` (PAPER_DEFAULTS), and shrunken
ones (SYNTHETIC_DEFAULTS: small backbone, small images, few episodes, higher learning rates) for the
embedded synthetic default. ``config.json`` holds the
resolved config, so a run can be rebuilt from it alone (:func:`read_config`).
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
    PathName,
    check_value,
    flag_name,
    setting,
)

PLUS_METHOD = "rfmml-plus"  # RF-MML+ (issue 11): PLUS_HEAD_BUDGET, proto_calibration.py
EPISODIC_METHODS = ("rfmml", "protonet", "rfmml-no-ret", "rfmml-no-acf", PLUS_METHOD)
CE_METHODS = ("plain", "reweight", "resample", "logit-adjust")
PROTO_HEADS = ("plain", "calibrated")  # see rfmml.trainer.proto_calibration
FROZEN_METHOD = "frozen"  # no training: the pretrained features with the Proto and SVM heads
METHODS = EPISODIC_METHODS + CE_METHODS + (FROZEN_METHOD,)
PRESETS = ("paper",)
TUNES = ("head", "last", "all")  # see rfmml.trainer.tuning
HEAD_EMBED_DIM = 256  # --tune head's default projection width (ANCHORS.md: linear 256-d on lite0)
# Settings that only one family of methods reads (the "defaults shrunk" message names the others only).
CE_ONLY = ("epochs", "lr", "lr_step")
EPISODIC_ONLY = ("ret_episodes", "acf_episodes", "ret_lr", "acf_lr", "val_every", "log_every")
DEVICES = ("auto", "cpu", "cuda")
SVM_CLASS_WEIGHTS = ("balanced", "none")
# The split protocol's settings: --split (a finished split) takes none of them.
PROTOCOL_FIELDS = (
    "train_frac",
    "train_per_class",
    "val_per_class",
    "test_per_class",
    "minority_classes",
    "minority",
    "minority_shots",
)
DEFAULT_TRAIN_FRAC = 0.5  # when neither --train-frac nor --train-per-class is given

# The paper's setting (Guan et al., ICASSP 2020: --preset paper), the embedded default's shrunken one,
# and for real data without a preset the offline default (DATA_DEFAULTS: efficientnet_lite0's packaged
# ImageNet weights, 128 px, --tune head, with budgets per regime in TUNE_BUDGETS).
PAPER_DEFAULTS: dict[str, Any] = {
    "backbone": "wide_resnet50_2",
    "pretrained": True,
    "image_size": 224,
    "tune": "all",
    "ret_episodes": 80_000,
    "acf_episodes": 2_000,
    "ret_lr": 5e-6,
    "acf_lr": 1e-6,
    "val_every": 1_000,
    "log_every": 50,
    "threads": 0,
    # cross-entropy baselines: Adam, lr / 5 every 200 epochs (the paper's schedule)
    "epochs": 600,
    "lr": 1e-4,
    "lr_step": 200,
}
SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "backbone": "conv4",
    "pretrained": False,
    "image_size": 32,
    "tune": "all",
    "ret_episodes": 500,
    "acf_episodes": 200,
    "ret_lr": 1e-3,
    "acf_lr": 2e-4,
    "val_every": 100,
    "log_every": 10,
    "threads": 1,  # tiny models: one thread is as fast, and robust on a shared CPU
    "epochs": 15,
    "lr": 1e-3,
    "lr_step": 10,
}

DATA_DEFAULTS: dict[str, Any] = {
    "backbone": "efficientnet_lite0",
    "pretrained": True,
    "threads": 0,
}
# efficientnet_lite0 at 128 px: 79 % frozen nearest-prototype accuracy on EuroSAT against 77 % at 64
# px (backbones.py); any other backbone keeps the paper's 224.
DEFAULT_IMAGE_SIZES = {"efficientnet_lite0": 128}
# --tune head trains a small head on cached features: an episode costs about 2 ms on one core, so the
# paper's episode budget costs minutes. Learning rates for a fresh linear layer: on EuroSAT-LT (seed 0)
# RET at 1e-4 peaked at the first validation (episode 1,000 of 80,000) and tested 81.0 % proto; 1e-5
# peaked at 10,000 and tested 81.9 %.
HEAD_BUDGET: dict[str, Any] = {
    "ret_episodes": 80_000,
    "acf_episodes": 2_000,
    "ret_lr": 1e-5,
    "acf_lr": 1e-6,
    "val_every": 1_000,
    "log_every": 100,
    "epochs": 100,
    "lr": 1e-3,
    "lr_step": 40,
    # tiny steps: one thread is 10x faster than two on a shared 2-core CPU (measured, BENCHMARKS.md);
    # the feature extraction before them uses every core
    "threads": 1,
}

# rfmml-plus in --tune head (issue 11, EuroSAT-LT validation, seeds 0-1): RET's validation accuracy
# peaks by episode 3,000-6,000 and then falls as it overfits the majority classes, and ACF at 1e-6
# for 2,000 episodes never recovers it (its checkpoints were never the best). A short RET, then a
# long ACF at RET's rate: ACF lifted validation from 83.7 to 87.1 % (seed 0, s = 5).
PLUS_HEAD_BUDGET: dict[str, Any] = {
    "ret_episodes": 5_000,
    "acf_episodes": 20_000,
    "acf_lr": 1e-5,
}

SEED_MAX = 2**32 - 1  # numpy's seeding takes 0 <= seed < 2**32, torch's < 2**63: the smaller range
# The episodic loop keeps every decoded training image on the device as uint8, S * S * 3 bytes: at
# 4096 px that is 50 MB an image, so larger sizes only exhaust memory (the paper uses 224).
IMAGE_SIZE_MAX = 4096
EPISODES_MAX = 10**9  # years of training; keeps every episode counter far inside int64
EPOCHS_MAX = 10**6
BATCH_MAX = 2**16  # a sanity bound: larger batches exhaust memory before they help
POSITIVE = FiniteFloat(min=0, min_open=True)
INT_2_UP = click.IntRange(min=2)
INT_0_UP = click.IntRange(min=0)
EPISODE_COUNT = click.IntRange(0, EPISODES_MAX)
EVERY_EPISODES = click.IntRange(1, EPISODES_MAX)
EVERY_EPOCHS = click.IntRange(1, EPOCHS_MAX)
BATCH = click.IntRange(1, BATCH_MAX)
RUN_FOLDER = PathName(file_okay=False)
FOLDER = PathName(file_okay=False)
FILE = PathName(dir_okay=False)


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
    method: str = setting(
        "rfmml",
        help="rfmml (RET + ACF); ablations rfmml-no-ret, rfmml-no-acf; rfmml-plus (RF-MML+: RET + ACF "
        "with the calibrated Proto head, and with --tune head a short RET and a long ACF); protonet "
        "(fixed all-class episodes); cross-entropy baselines with a linear layer: plain, reweight, "
        "resample, logit-adjust; frozen (no training: the pretrained features with the Proto and SVM heads).",
        section=RUN,
        type=click.Choice(METHODS),
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
        help="paper: the paper's setting in one flag: wide_resnet50_2 with ImageNet weights (from "
        "torchvision's cache, or a download where allowed; offline: --weights FILE), 224 px, 80,000 RET + "
        "2,000 ACF episodes at lr 5e-6 / 1e-6, --tune all. Flags given beside it win.",
        section=RUN,
        type=click.Choice(PRESETS),
        default_text="efficientnet_lite0 ImageNet weights (packaged, offline), 128 px, --tune head",
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
        written before the option: calibrated for rfmml-plus only)."""
        return (self.proto_head or ("calibrated" if self.method == PLUS_METHOD else "plain")) == "calibrated"


SETTINGS = {item.name: item for item in fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)


def resolve_defaults(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Fill every ``None`` budget/model field; return the config and the names that were shrunk.

    Where the values come from: ``--preset paper``: PAPER_DEFAULTS; the embedded synthetic set:
    SYNTHETIC_DEFAULTS; real data: :func:`data_defaults`. Flags given always win. The second value
    lists the settings taken from SYNTHETIC_DEFAULTS (for the "defaults shrunk to fit" message).
    """
    if config.preset == "paper":
        table = PAPER_DEFAULTS
    elif config.synthetic:
        table = SYNTHETIC_DEFAULTS
    else:
        table = data_defaults(config)
    changes = {k: v for k, v in table.items() if getattr(config, k) is None}
    if config.pretrained is None and config.backbone == "conv4":
        changes["pretrained"] = False
    if config.pretrained is None and (config.weights is not None or config.init is not None):
        changes["pretrained"] = False
    if config.proto_head is None:
        changes["proto_head"] = "calibrated" if config.calibrated_proto else "plain"
    if config.method == FROZEN_METHOD:
        changes["tune"] = "head"  # nothing trains; the features are computed once and cached
    tune = changes.get("tune", config.tune)
    if config.augment is None:  # EuroSAT-LT, --tune head: 81.9 % with the 8 views, 81.4 % without
        changes["augment"] = tune != "head"
    if tune == "head" and config.method in EPISODIC_METHODS and config.embed_dim is None:
        changes["embed_dim"] = HEAD_EMBED_DIM
    irrelevant = EPISODIC_ONLY if config.method in CE_METHODS else CE_ONLY
    shrunk = (
        sorted(k for k in changes if k in table and k not in irrelevant)
        if table is SYNTHETIC_DEFAULTS
        else []
    )
    if config.train_frac is None and config.train_per_class is None:
        changes["train_frac"] = DEFAULT_TRAIN_FRAC
    return config.replace(**changes), shrunk


def data_defaults(config: TrainConfig) -> dict[str, Any]:
    """The defaults for real data without a preset: efficientnet_lite0's packaged ImageNet weights
    (offline) at 128 px (another backbone: 224); ``--tune head`` when the backbone starts from
    weights (pretrained, --weights or --init), else ``all``; HEAD_BUDGET for head (rfmml-plus:
    PLUS_HEAD_BUDGET over it), else the paper's episode budget and learning rates."""
    backbone = config.backbone or DATA_DEFAULTS["backbone"]
    from_weights = config.weights is not None or config.init is not None
    pretrained = config.pretrained if config.pretrained is not None else backbone != "conv4"
    tune = config.tune or ("head" if pretrained or from_weights else "all")
    paper_budget = {k: v for k, v in PAPER_DEFAULTS.items() if k in HEAD_BUDGET}
    return {
        **DATA_DEFAULTS,
        "image_size": DEFAULT_IMAGE_SIZES.get(backbone, PAPER_DEFAULTS["image_size"]),
        "tune": tune,
        **(HEAD_BUDGET if tune == "head" else paper_budget),
        **(PLUS_HEAD_BUDGET if tune == "head" and config.method == PLUS_METHOD else {}),
    }


def validate(config: TrainConfig) -> None:
    """Raise InputError (one line) for a value its flag would refuse, or settings that cannot work
    together. Catches configs built in Python; the command line and config.json are checked earlier."""
    for name, item in SETTINGS.items():
        check_value(item, HINTS[name], getattr(config, name), flag_name(name))
    check_combinations(config)


def check_combinations(config: TrainConfig) -> None:
    """The checks that involve two settings (click checks each flag on its own)."""
    pairs = [
        (
            config.weights is not None and config.init is not None,
            "give --weights FILE or --init RUN, not both",
        ),
        (
            config.train_frac is not None and config.train_per_class is not None,
            "give --train-frac or --train-per-class, not both",
        ),
        (
            config.minority_classes is not None and bool(config.minority),
            "give --minority-classes or --minority NAME, not both",
        ),
        (
            config.minority_classes is not None and config.minority_shots is None,
            "--minority-classes needs --minority-shots",
        ),
        (not config.svm_c, "--svm-c needs at least one value"),
        (
            config.method == FROZEN_METHOD and config.tune not in (None, "head"),
            "--method frozen trains nothing (its features are cached as with --tune head); drop --tune",
        ),
    ]
    for wrong, message in pairs:
        if wrong:
            raise InputError(message)


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
    unresolved = [k for k in PAPER_DEFAULTS if getattr(config, k) is None]
    if unresolved:
        raise InputError(f"{path}: {unresolved[0]}: missing (not a config.json written by rfmml-train)")
    return config
