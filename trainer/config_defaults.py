"""The resolved defaults of the settings left ``None`` (:func:`resolve_defaults`, before training):
the method (DEFAULT_METHOD, rfmml-plus; with ``--preset paper`` the paper's, PAPER_METHOD); for real
data the offline default (DATA_DEFAULTS: efficientnet_lite0's packaged ImageNet weights at 128 px,
``--tune head`` with HEAD_BUDGET, :func:`data_defaults`), the paper's values with ``--preset paper``
(PAPER_DEFAULTS), and shrunken ones (SYNTHETIC_DEFAULTS: small backbone, small images, few episodes,
higher learning rates) for the embedded synthetic default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rfmml.trainer.config_rules import CE_METHODS, EPISODIC_METHODS, FROZEN_METHOD, PLUS_METHOD

if TYPE_CHECKING:
    from rfmml.trainer.config import TrainConfig


# --method: RF-MML+ by default (EuroSAT-LT, --tune head, 5 seeds x s = 5, 10: it beat every baseline,
# the logit-adjusted probe included, on 10 of 10 (seed, s) in overall and minority accuracy; on the
# embedded synthetic set, conv4 from scratch, it scores as rfmml does within noise: RESULTS.md,
# "RF-MML+ on pretrained features"); --preset paper is the paper's setting, so its method.
DEFAULT_METHOD = PLUS_METHOD
PAPER_METHOD = "rfmml"
HEAD_EMBED_DIM = 256  # --tune head's default projection width (ANCHORS.md: linear 256-d on lite0)
# Settings that only one family of methods reads (the "defaults shrunk" message names the others only).
CE_ONLY = ("epochs", "lr", "lr_step")
EPISODIC_ONLY = ("ret_episodes", "acf_episodes", "ret_lr", "acf_lr", "val_every", "log_every")
DEFAULT_TRAIN_FRAC = 0.5  # when neither --train-frac nor --train-per-class is given

# The paper's setting (Guan et al., ICASSP 2020: --preset paper), the embedded default's shrunken one,
# and for real data without a preset the offline default (DATA_DEFAULTS: efficientnet_lite0's packaged
# ImageNet weights, 128 px, --tune head, with HEAD_BUDGET: data_defaults).
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
# rfmml-plus in --tune last (issue 11, efficientnet_lite0 at 128 px): every episode runs the whole
# backbone (4-5 episodes/s on a 2-core CPU), so the paper's 82,000 episodes would take hours. On
# EuroSAT-LT seed 0's validation split (s = 5), 1,000 RET + 2,000 ACF at 1e-5 was still climbing at
# its end (83.4 %); at 1e-4: 89.2 %, and on the test split it beat its own --tune head run and the
# logit-adjusted probe tuned the same way (RESULTS.md, "--tune last").
PLUS_LAST_BUDGET: dict[str, Any] = {
    "ret_episodes": 1_000,
    "acf_episodes": 2_000,
    "ret_lr": 1e-4,
    "acf_lr": 1e-4,
    "val_every": 250,
    "log_every": 50,
}
PLUS_BUDGETS = {"head": PLUS_HEAD_BUDGET, "last": PLUS_LAST_BUDGET}


def resolve_defaults(config: TrainConfig) -> tuple[TrainConfig, list[str]]:
    """Fill every ``None`` method/budget/model field; return the config and the names that were shrunk.

    The method first (every other default may depend on it): PAPER_METHOD with ``--preset paper``,
    else DEFAULT_METHOD. Where the other values come from: ``--preset paper``: PAPER_DEFAULTS; the
    embedded synthetic set: SYNTHETIC_DEFAULTS; real data: :func:`data_defaults`. Flags given always
    win. The second value lists the settings taken from SYNTHETIC_DEFAULTS (for the "defaults shrunk
    to fit" message).
    """
    if config.method is None:
        config = config.replace(method=PAPER_METHOD if config.preset == "paper" else DEFAULT_METHOD)
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
    weights (pretrained, --weights or --init), else ``all``; HEAD_BUDGET for head, else the paper's
    episode budget and learning rates; rfmml-plus: PLUS_HEAD_BUDGET / PLUS_LAST_BUDGET over them in
    head / last."""
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
        **(PLUS_BUDGETS.get(tune, {}) if config.method == PLUS_METHOD else {}),
    }
