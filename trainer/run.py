"""A training run end to end (split -> data -> model -> RET/ACF -> test heads -> eval.json), resume,
and :func:`load_run` for the exporter and comparison tools."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rfmml.trainer.ce_train import EpochPosition, train_cross_entropy
from rfmml.trainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rfmml.trainer.config import CE_METHODS, TrainConfig, resolve_defaults, validate
from rfmml.trainer.data import conversion_message, default_cache_dir, load_part
from rfmml.trainer.errors import InputError
from rfmml.trainer.evaluate import evaluate_heads, summary_table
from rfmml.trainer.loop import Phase, Position, TrainData, train
from rfmml.trainer.models import EmbeddingNet, WeightsUnavailableError, build_embedding_net
from rfmml.trainer.sampler import EpisodeSampler, EpisodeSpec, acf_spec, ret_spec
from rfmml.trainer.split import Split, make_split, scan_folder

PROTOCOL_FIELDS = (
    "train_frac",
    "train_per_class",
    "val_per_class",
    "test_per_class",
    "minority_classes",
    "minority_shots",
)


@dataclass
class LoadedRun:
    """A finished (or resumable) run: its config, split, model (weights loaded, eval mode), folder and
    the raw checkpoint dict."""

    config: TrainConfig
    split: Split
    model: EmbeddingNet
    run_dir: Path
    checkpoint: dict


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    return torch.device(name)


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


def n_max_of(split: Split, config: TrainConfig) -> int:
    """N_max: --n-max, else the smallest minority training count, else min(smallest class, threshold)."""
    counts = split.counts("train")
    smallest = min(counts.values())
    if config.n_max is not None:
        if config.n_max > smallest:
            raise InputError(f"--n-max {config.n_max} is larger than the smallest class ({smallest} images)")
        return config.n_max
    if split.minority:
        return min(counts[c] for c in split.minority)
    return min(smallest, config.minority_threshold)


def build_model(config: TrainConfig) -> EmbeddingNet:
    """The run's embedding network; ``--init RUN`` loads that run's best.pt backbone weights."""
    weights = config.weights
    if config.init is not None:
        weights = Path(config.init) / "best.pt"
        if not weights.is_file():
            raise InputError(f"--init {config.init}: no best.pt there (is it a finished rfmml-train run?)")
    try:
        return build_embedding_net(config.backbone, bool(config.pretrained), weights)
    except WeightsUnavailableError as error:
        raise InputError(str(error)) from None


def _phases(config: TrainConfig, split: Split, sampler: EpisodeSampler) -> list[Phase]:
    """The episodic phases of ``config.method``: rfmml = RET then ACF; rfmml-no-ret = ACF only;
    rfmml-no-acf = RET only; protonet = fixed episodes on all classes (K = |C|, N = N_max - 1,
    balanced queries) for ``ret_episodes`` at ``ret_lr``."""
    n_max = n_max_of(split, config)
    majority = [split.classes.index(c) for c in split.majority]
    n_classes = len(split.classes)
    phases = []
    if config.method == "protonet":
        shots = max(1, n_max - 1)
        spec = EpisodeSpec(
            tuple(range(n_classes)), n_classes, n_classes, shots, shots, config.queries, "balanced", n_max
        )
        phases.append(Phase("protonet", config.ret_episodes, config.ret_lr, spec))
    if config.ret_episodes and config.method in ("rfmml", "rfmml-no-acf"):
        if len(majority) < 2:
            raise InputError("RET needs at least 2 majority classes; pass --ret-episodes 0")
        phases.append(
            Phase("ret", config.ret_episodes, config.ret_lr, ret_spec(majority, n_max, config.queries))
        )
    if config.acf_episodes and config.method in ("rfmml", "rfmml-no-ret"):
        phases.append(
            Phase(
                "acf", config.acf_episodes, config.acf_lr, acf_spec(len(split.classes), n_max, config.queries)
            )
        )
    for phase in phases:
        try:
            sampler.check(phase.spec)
        except ValueError as error:
            raise InputError(f"{phase.name} episodes cannot be drawn: {error}") from None
    return phases


def _load_parts(split: Split, config: TrainConfig, say: Callable[[str], None]):
    cache = None if config.cache_dir == "" else Path(config.cache_dir or default_cache_dir())
    conversions: Counter[str] = Counter()
    parts = {}
    for part in ("train", "val", "test"):
        n = sum(split.counts(part).values())
        say(f"loading {part}: {n} images at {config.image_size} px")
        parts[part] = load_part(split, part, config.image_size, cache, config.workers, conversions)
    if (message := conversion_message(conversions)) is not None:
        print(f"rfmml-train: warning: {message}", file=sys.stderr)  # one line, every run
    return parts


def run_training(config: TrainConfig, resume: bool = False, say: Callable[[str], None] = print) -> dict:
    """Train (or resume) the run in ``config.out``; return the eval.json dict.

    torch's CPU thread count is set to ``config.threads`` (when > 0) for the run and restored after.
    """
    threads = torch.get_num_threads()
    try:
        return _run_training(config, resume, say)
    finally:
        torch.set_num_threads(threads)


def _run_training(config: TrainConfig, resume: bool, say: Callable[[str], None]) -> dict:
    run_dir = Path(config.out)
    if not resume:
        validate(config)
        config, shrunk = resolve_defaults(config)
        validate(config)
        if (run_dir / "last.pt").exists():
            raise InputError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
        if shrunk:
            say(
                "no --data: training on the embedded synthetic aerial set (8 classes, 3 minority); defaults "
                "shrunk to fit a CPU minute: "
                + ", ".join(f"{k}={getattr(config, k)}" for k in shrunk)
                + " (the paper: wide_resnet50_2, 224 px, 80,000 + 2,000 episodes, lr 5e-6 / 1e-6)"
            )
        split = prepare_split(config)
    else:
        split = Split.load(run_dir / "split.json")
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the initial weights of a from-scratch backbone
    model = build_model(config)  # before decoding: missing weights fail fast
    parts = _load_parts(split, config, say)
    if not resume:  # written once the data has decoded: bad input leaves no half-made run folder
        run_dir.mkdir(parents=True, exist_ok=True)
        split.save(run_dir / "split.json")
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
        (run_dir / "metrics.jsonl").write_text("")
    position, optimizer_state = None, None
    if resume:
        state = load_checkpoint(run_dir / "last.pt", config.backbone)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as error:
            raise CheckpointError(f"{run_dir / 'last.pt'}: does not fit this run's model ({error})") from None
        optimizer_state = state["optimizer"]
        position = Position(
            state["phase_index"],
            state["episode"],
            state["step"],
            state["best_val"],
            state.get("elapsed", 0.0),
        )
        say(f"resuming {run_dir} at {state['phase']} episode {state['episode']} (step {state['step']})")
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    train_images, train_labels = parts["train"]
    data = TrainData(
        train_images.to(device),
        train_labels.to(device),
        parts["val"][0].to(device),
        parts["val"][1].to(device),
        split.classes,
        split.majority,
    )
    linear = None
    if config.method in CE_METHODS:
        linear = torch.nn.Linear(model.embedding_dim, len(split.classes)).to(device)
        gen = torch.Generator(device=device).manual_seed(config.seed + 1)
        epoch_position = None
        if resume:
            linear.load_state_dict(state["linear"])
            gen.set_state(state["rng"]["gen"])
            epoch_position = EpochPosition(position.episode, position.best_val, position.elapsed)
        say(
            f"training on {device}: {config.backbone} + linear layer, {config.method} cross-entropy, "
            f"{config.epochs} epochs, batch {config.ce_batch}, lr {config.lr:g} / 5 every {config.lr_step}"
        )
        train_cross_entropy(
            model, linear, data, config, run_dir, device, gen, epoch_position, optimizer_state
        )
    else:
        sampler = EpisodeSampler(train_labels, len(split.classes), config.seed, device)
        if resume:
            sampler.load_state(state["rng"])
        phases = _phases(config, split, sampler)
        say(
            f"training on {device}: {config.backbone}, {config.method}, {len(split.classes)} classes "
            f"({len(split.minority)} minority), "
            + ", ".join(f"{p.name} {p.episodes} episodes lr {p.lr:g}" for p in phases)
        )
        train(model, data, phases, config, run_dir, device, sampler, position, optimizer_state)
    if not (run_dir / "best.pt").exists():  # no episodes at all: the initial weights
        save_checkpoint(
            run_dir / "best.pt",
            {
                "backbone": config.backbone,
                "config": config.to_dict(),
                "model": model.state_dict(),
                "optimizer": None,
                "phase": "none",
                "episode": 0,
                "step": 0,
                "best_val": -1.0,
                "extra": {},
            },
        )
    best = load_checkpoint(run_dir / "best.pt", config.backbone)
    model.load_state_dict(best["model"])
    if linear is not None:
        linear.load_state_dict(best["linear"])
    result = evaluate_heads(model, parts, split.classes, split.majority, config, device, linear)
    result["checkpoint"] = {
        "file": "best.pt",
        "phase": best["phase"],
        "episode": best["episode"],
        "val_overall": best["best_val"],
    }
    from rfmml.runtime.artifact import atomic_write_bytes

    atomic_write_bytes(run_dir / "eval.json", (json.dumps(result, indent=1) + "\n").encode())
    say(summary_table(result, split.minority))
    return result


def read_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InputError(f"{run_dir}: not a run folder (no config.json)") from None
    except (ValueError, TypeError) as error:
        raise InputError(f"{path}: unreadable config ({error})") from None


def load_run(run_dir: str | Path, checkpoint: str = "best.pt") -> LoadedRun:
    """Rebuild a run's model from its folder: config.json + split.json + ``checkpoint`` (eval mode).

    Raises InputError for a folder without config/split and CheckpointError for a bad checkpoint.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    split = Split.load(run_dir / "split.json")
    state = load_checkpoint(run_dir / checkpoint, config.backbone)
    model = build_embedding_net(config.backbone, pretrained=False)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{run_dir / checkpoint}: weights do not fit {config.backbone} ({error})"
        ) from None
    model.eval()
    return LoadedRun(config, split, model, run_dir, state)
