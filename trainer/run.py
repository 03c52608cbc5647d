"""A training run end to end (lock the folder -> split -> data -> model -> the method's training by
the engine -> test heads -> eval.json), resume, and :func:`load_run` for the exporter and comparison
tools."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from rfmml.runtime.atomic_files import atomic_write_bytes
from rfmml.trainer.checkpoint import Checkpoint, CheckpointError
from rfmml.trainer.config import TrainConfig, read_config, validate
from rfmml.trainer.config_defaults import resolve_defaults
from rfmml.trainer.device import cudnn_benchmark, resolve_device, use_deterministic_algorithms
from rfmml.trainer.distributed import DIGEST_ENV, World, joined, rank_device, state_digest, world_from_env
from rfmml.trainer.engine import Engine
from rfmml.trainer.errors import InputError
from rfmml.trainer.evaluate import evaluate_heads, summary_table
from rfmml.trainer.method_interface import Method
from rfmml.trainer.methods import build_method
from rfmml.trainer.metrics_log import MetricsLog
from rfmml.trainer.models import EmbeddingNet, build_embedding_net
from rfmml.trainer.run_folder import RunFolder, writing
from rfmml.trainer.run_setup import build_model, load_parts, prepare_split, train_setup, warn, weights_note
from rfmml.trainer.split import Split
from rfmml.trainer.tuning import configure_net


@dataclass
class LoadedRun:
    """A finished (or resumable) run: its config, split, model (weights loaded, eval mode), folder and
    the checkpoint as its plain dict (the layout of :class:`rfmml.trainer.checkpoint.Checkpoint`)."""

    config: TrainConfig
    split: Split
    model: EmbeddingNet
    run_dir: Path
    checkpoint: dict


def run_training(config: TrainConfig, resume: bool = False, say: Callable[[str], None] = print) -> dict:
    """Train (or resume) the run in ``config.out``; return the eval.json dict.

    The run folder is locked for the whole run (a second rfmml-train there gets an InputError).
    torch's CPU thread count is set to ``config.threads`` (when > 0) for the run and restored after.
    Under torchrun (rfmml.trainer.distributed) every rank trains; rank 0 alone locks and writes the
    folder, prints and evaluates; the other ranks return {}.
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    world = world_from_env()
    try:
        shrunk: list[str] = []
        if not resume:
            validate(config)
            config, shrunk = resolve_defaults(config)
            validate(config)
        if not world.is_writer:  # one voice: rank 0's
            config, say = config.replace(progress=False), _silent
        if config.deterministic:  # before the first CUDA call: cuBLAS reads its workspace setting at init
            use_deterministic_algorithms(warn)
        device = rank_device(resolve_device(config.device), world)
        return _run(config, resume, shrunk, say, world, device)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _run(
    config: TrainConfig,
    resume: bool,
    shrunk: list[str],
    say: Callable[[str], None],
    world: World,
    device: torch.device,
) -> dict:
    """Lock the folder (rank 0), set up, train (the engine), evaluate (rank 0). Under torchrun the
    process group lives from the set-up to the end of training: rank 0 evaluates alone."""
    with ExitStack() as folder:
        with joined(world, device) as world:
            with world.all_or_none():  # a rank that fails to set up stops them all
                if world.is_writer:
                    folder.enter_context(RunFolder(config.out, say))
                method, checkpoint, parts, split = _prepare(config, resume, shrunk, say, world, device)
            Engine(method, config, Path(config.out), device, warn, world).run(checkpoint)
            if os.environ.get(DIGEST_ENV):
                modules = [method.model, *method.modules().values()]
                warn(f"rank {world.rank} of {world.size}: trained state sha256 {state_digest(modules)}")
        if not world.is_writer:
            return {}
        return _evaluate(method, parts, split, config, device, say)


def _prepare(
    config: TrainConfig,
    resume: bool,
    shrunk: list[str],
    say: Callable[[str], None],
    world: World,
    device: torch.device,
) -> tuple[Method, Checkpoint | None, dict[str, tuple[torch.Tensor, torch.Tensor]], Split]:
    """Split, model, data and method of the run (the folder locked); a new run's fixed files."""
    run_dir = Path(config.out)
    if resume:
        checkpoint, split = _resume_point(run_dir, config, world)
    else:
        checkpoint, split = None, _new_run_split(run_dir, config, shrunk, say, world)
    if config.threads and config.tune != "head":
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # the initial weights of a from-scratch backbone (and a linear layer)
    model = build_model(config)  # before decoding: missing weights fail fast
    if checkpoint is None:
        say(weights_note(config))
    parts = load_parts(split, config, say)
    setup = train_setup(config, split, model, parts, device, say, world)
    if config.threads:  # on cached features: after the extraction, which uses every core
        torch.set_num_threads(config.threads)
    parts = setup.parts  # on cached features: the feature parts, which evaluation embeds
    method = build_method(setup)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark(method, bool(config.deterministic))
    if checkpoint is None and world.is_writer:  # once the data has decoded: bad input leaves no half-made run
        _start_run_files(run_dir, split, config)
    elif checkpoint is not None:
        say(f"resuming {run_dir} at {checkpoint.phase} {checkpoint.unit} {checkpoint.step}")
    if world.size > 1:
        say(f"torchrun: {world.size} processes, gradients averaged; episode budgets are global")
    say(method.describe())
    return method, checkpoint, parts, split


def _resume_point(run_dir: Path, config: TrainConfig, world: World) -> tuple[Checkpoint, Split]:
    """last.pt and split.json of the run to resume (read before decoding: a bad one fails fast). Under
    torchrun every rank reads them (on several nodes: a folder they all see)."""
    if not (run_dir / "last.pt").exists():
        raise InputError(
            f"{run_dir} has no last.pt to resume from (stopped before its first checkpoint); "
            f"start it again with --out {run_dir}"
        )
    checkpoint = Checkpoint.load(run_dir / "last.pt", config.backbone)
    if checkpoint.world_size != world.size:
        trained = checkpoint.world_size
        how = "a single process" if trained == 1 else f"torchrun with {trained} processes in all"
        raise InputError(
            f"{run_dir} was trained by {trained} process(es), this resume has {world.size}; resume it "
            f"with {how} (another count draws other episodes)"
        )
    return checkpoint, Split.load(run_dir / "split.json")


def _new_run_split(
    run_dir: Path, config: TrainConfig, shrunk: list[str], say: Callable[[str], None], world: World
) -> Split:
    """The split of a new run in ``run_dir`` (which must not hold a run yet; rank 0 checks)."""
    if world.is_writer and (run_dir / "last.pt").exists():
        raise InputError(f"{run_dir} already holds a run; use --resume {run_dir} or another --out")
    if shrunk:
        say(
            "no --data: training on the embedded synthetic aerial set (8 classes, 3 minority); defaults "
            "shrunk to fit a CPU minute: "
            + ", ".join(f"{k}={getattr(config, k)}" for k in shrunk)
            + " (the paper: wide_resnet50_2, 224 px, 80,000 + 2,000 episodes, lr 5e-6 / 1e-6)"
        )
    return prepare_split(config)


def _silent(message: str) -> None:
    """The ``say`` of torchrun's ranks other than 0 (rank 0 reports the run)."""


def _start_run_files(run_dir: Path, split: Split, config: TrainConfig) -> None:
    """split.json, config.json and an empty metrics.jsonl: the run's fixed inputs."""
    with writing(run_dir / "split.json"):
        split.save(run_dir / "split.json")
    with writing(run_dir / "config.json"):
        atomic_write_bytes(run_dir / "config.json", (json.dumps(config.to_dict(), indent=1) + "\n").encode())
    MetricsLog(run_dir / "metrics.jsonl", warn).start()


def _evaluate(
    method: Method,
    parts: dict[str, tuple[torch.Tensor, torch.Tensor]],
    split: Split,
    config: TrainConfig,
    device: torch.device,
    say: Callable[[str], None],
) -> dict:
    """Load best.pt, evaluate the test heads, write eval.json; return its dict."""
    run_dir = Path(config.out)
    best = Checkpoint.load(run_dir / "best.pt", config.backbone)
    method.model.load_state_dict(best.model)
    modules = method.modules()
    for name, module in modules.items():
        module.load_state_dict(best.method_modules[name])
    result = evaluate_heads(
        method.model, parts, split.classes, split.majority, config, device, modules.get("linear")
    )
    result["checkpoint"] = {
        "file": "best.pt",
        "phase": best.phase,
        "episode": best.step,
        "val_overall": best.best_val,
    }
    with writing(run_dir / "eval.json"):
        atomic_write_bytes(run_dir / "eval.json", (json.dumps(result, indent=1) + "\n").encode())
    say(summary_table(result, split.minority))
    return result


def load_run(run_dir: str | Path, checkpoint: str = "best.pt") -> LoadedRun:
    """Rebuild a run's model from its folder: config.json + split.json + ``checkpoint`` (eval mode).

    Raises InputError for a folder without config/split and CheckpointError for a bad checkpoint.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    split = Split.load(run_dir / "split.json")
    state = Checkpoint.load(run_dir / checkpoint, config.backbone)
    model = build_embedding_net(config.backbone, pretrained=False)
    configure_net(model, config)
    try:
        model.load_state_dict(state.model)
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"{run_dir / checkpoint}: weights do not fit {config.backbone} ({error})"
        ) from None
    model.eval()
    return LoadedRun(config, split, model, run_dir, state.to_state())
