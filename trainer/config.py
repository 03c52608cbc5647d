"""Training configuration: one frozen dataclass of every setting, JSON round-trippable.

Fields left as ``None`` are resolved by :func:`resolve_defaults` before training: the paper's values
for real data, and shrunken values (small backbone, small images, few episodes, higher learning rates)
for the embedded synthetic default. ``config.json`` holds the resolved config, so a run can be
rebuilt from it alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

EPISODIC_METHODS = ("rfmml", "protonet", "rfmml-no-ret", "rfmml-no-acf")
CE_METHODS = ("plain", "reweight", "resample", "logit-adjust")
METHODS = EPISODIC_METHODS + CE_METHODS
# Settings that only one family of methods reads (the "defaults shrunk" message names the others only).
CE_ONLY = ("epochs", "lr", "lr_step")
EPISODIC_ONLY = ("ret_episodes", "acf_episodes", "ret_lr", "acf_lr", "val_every", "log_every")
DISTANCES = ("euclidean", "sqeuclidean")
DEVICES = ("auto", "cpu", "cuda")

# The paper's budget (Guan et al., ICASSP 2020) and the embedded default's shrunken one.
PAPER_DEFAULTS: dict[str, Any] = {
    "backbone": "wide_resnet50_2",
    "pretrained": True,
    "image_size": 224,
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


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (see the README's flag table for their meaning)."""

    out: str
    data: str | None = None  # None: the embedded synthetic aerial set
    method: str = "rfmml"
    # split / imbalance protocol
    split: str | None = None  # reuse a split.json
    train_frac: float | None = None
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_per_class: int | None = None
    minority_classes: int | None = None
    minority: tuple[str, ...] = ()
    minority_shots: int | None = None
    minority_threshold: int = 20
    n_max: int | None = None
    seed: int = 0
    # model
    backbone: str | None = None
    pretrained: bool | None = None
    weights: str | None = None
    image_size: int | None = None
    distance: str = "euclidean"
    device: str = "auto"
    # episodes and optimisation
    ret_episodes: int | None = None
    acf_episodes: int | None = None
    queries: int = 5
    ret_lr: float | None = None
    acf_lr: float | None = None
    augment: bool = True
    val_every: int | None = None
    log_every: int | None = None
    # cross-entropy baselines (--method plain|reweight|resample|logit-adjust)
    epochs: int | None = None
    lr: float | None = None
    lr_step: int | None = None  # divide the learning rate by 5 every this many epochs
    ce_batch: int = 64
    la_tau: float = 1.0  # logit adjustment strength
    init: str | None = None  # start the backbone from this run's best.pt
    # heads and evaluation
    svm_c: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    svm_class_weight: str = "balanced"
    svm_l2_normalize: bool = True
    # plumbing
    batch_size: int = 256
    workers: int = 0  # decode threads; 0: one per CPU (at most 16)
    threads: int | None = None  # torch CPU threads; 0: torch's default
    cache_dir: str | None = None  # None: $RFMML_CACHE or ~/.cache/rfmml; "" disables the cache
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (written by another version)."""
        names = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @property
    def synthetic(self) -> bool:
        return self.data is None


def resolve_defaults(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Fill every ``None`` budget/model field; return the config and the names that were shrunk.

    The second value lists the settings taken from SYNTHETIC_DEFAULTS (for the "defaults shrunk to fit"
    message); it is empty for real data.
    """
    table = SYNTHETIC_DEFAULTS if config.synthetic else PAPER_DEFAULTS
    changes = {k: v for k, v in table.items() if getattr(config, k) is None}
    if config.pretrained is None and config.backbone == "conv4":
        changes["pretrained"] = False
    if config.pretrained is None and (config.weights is not None or config.init is not None):
        changes["pretrained"] = False
    irrelevant = EPISODIC_ONLY if config.method in CE_METHODS else CE_ONLY
    shrunk = sorted(k for k in changes if k not in irrelevant) if config.synthetic else []
    if config.train_frac is None and config.train_per_class is None:
        changes["train_frac"] = 0.5
    return config.replace(**changes), shrunk


def validate(config: TrainConfig) -> None:
    """Raise InputError for settings that cannot work together (one line each)."""
    from rfmml.trainer.errors import InputError
    from rfmml.trainer.models import BACKBONES

    if config.method not in METHODS:
        raise InputError(f"--method {config.method!r} is not implemented; choose one of {', '.join(METHODS)}")
    if config.distance not in DISTANCES:
        raise InputError(f"--distance must be one of {', '.join(DISTANCES)}")
    if config.backbone is not None and config.backbone not in BACKBONES:
        raise InputError(f"unknown --backbone {config.backbone!r}; choose one of {', '.join(BACKBONES)}")
    checks = [
        (config.queries >= 1, "--queries must be at least 1"),
        (config.image_size is None or config.image_size >= 8, "--image-size must be at least 8"),
        (config.ret_episodes is None or config.ret_episodes >= 0, "--ret-episodes must be >= 0"),
        (config.acf_episodes is None or config.acf_episodes >= 0, "--acf-episodes must be >= 0"),
        (config.val_every is None or config.val_every >= 1, "--val-every must be at least 1"),
        (config.log_every is None or config.log_every >= 1, "--log-every must be at least 1"),
        (config.n_max is None or config.n_max >= 2, "--n-max must be at least 2"),
        (config.train_frac is None or 0 < config.train_frac < 1, "--train-frac must be in (0, 1)"),
        (config.minority_shots is None or config.minority_shots >= 2, "--minority-shots must be at least 2"),
        (config.svm_class_weight in ("balanced", "none"), "--svm-class-weight must be balanced or none"),
        (all(c > 0 for c in config.svm_c) and len(config.svm_c) > 0, "--svm-c values must be > 0"),
        (config.batch_size >= 1, "--batch-size must be at least 1"),
        (config.threads is None or config.threads >= 0, "--threads must be >= 0"),
        (
            config.train_per_class is None or config.train_per_class >= 2,
            "--train-per-class must be at least 2",
        ),
        (config.val_per_class is None or config.val_per_class >= 0, "--val-per-class must be >= 0"),
        (config.test_per_class is None or config.test_per_class >= 0, "--test-per-class must be >= 0"),
        (config.minority_classes is None or config.minority_classes >= 1, "--minority-classes must be >= 1"),
        (config.workers >= 0, "--workers must be >= 0"),
        (config.epochs is None or config.epochs >= 1, "--epochs must be at least 1"),
        (config.lr is None or config.lr > 0, "--lr must be > 0"),
        (config.lr_step is None or config.lr_step >= 1, "--lr-step must be at least 1"),
        (config.ce_batch >= 1, "--ce-batch must be at least 1"),
        (config.weights is None or config.init is None, "give --weights FILE or --init RUN, not both"),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
    if config.train_frac is not None and config.train_per_class is not None:
        raise InputError("give --train-frac or --train-per-class, not both")
    if config.minority_classes is not None and config.minority:
        raise InputError("give --minority-classes or --minority NAME, not both")
    if config.minority_classes is not None and config.minority_shots is None:
        raise InputError("--minority-classes needs --minority-shots")
