"""What the training settings may be: the names a choice setting takes (methods, presets, tunes,
Proto heads, devices, SVM class weights), the split protocol's settings, the ranges of the numeric
ones (as the click types that :mod:`rfmml.trainer.config` declares them with), and
:func:`check_combinations`, the settings that cannot work together (click checks each flag on its
own)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from rfmml.runtime.errors import InputError
from rfmml.trainer.config_fields import FiniteFloat, PathName

if TYPE_CHECKING:
    from rfmml.trainer.config import TrainConfig


PLUS_METHOD = "rfmml-plus"  # RF-MML+ (issue 11): config_defaults.PLUS_BUDGETS, proto_calibration.py
EPISODIC_METHODS = ("rfmml", "protonet", "rfmml-no-ret", "rfmml-no-acf", PLUS_METHOD)
CE_METHODS = ("plain", "reweight", "resample", "logit-adjust")
PROTO_HEADS = ("plain", "calibrated")  # see rfmml.trainer.proto_calibration
FROZEN_METHOD = "frozen"  # no training: the pretrained features with the Proto and SVM heads
METHODS = EPISODIC_METHODS + CE_METHODS + (FROZEN_METHOD,)
PRESETS = ("paper",)
TUNES = ("head", "last", "all")  # see rfmml.trainer.tuning
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
