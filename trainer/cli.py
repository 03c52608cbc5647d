"""``rfmml-train``: click parses flags into a TrainConfig; everything else lives in run.py."""

from __future__ import annotations

import sys
import warnings

import click
from click.core import ParameterSource

from rfmml.trainer.checkpoint import CheckpointError
from rfmml.trainer.config import DEVICES, DISTANCES, METHODS, TrainConfig
from rfmml.trainer.errors import InputError
from rfmml.trainer.models import BACKBONES

EXAMPLES = """
\b
Examples:
  rfmml-train --out runs/demo                       # embedded synthetic set, about a minute on a CPU
  rfmml-train --data ~/AID --test-per-class 100 --minority-classes 10 --minority-shots 10 --out runs/aid-s10
  rfmml-train --data ~/tiles --minority River --minority Port --out runs/mine   # natural imbalance
  rfmml-train --data ~/AID --split runs/aid-s10/split.json --seed 2 --out runs/aid-s10-seed2
  rfmml-train --resume runs/aid-s10
"""
RESUME_OVERRIDES = ("resume", "device", "progress", "workers", "threads", "cache_dir", "no_cache")


@click.command(
    epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    help="ImageFolder root (class folders). Default: the embedded synthetic set.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder to create.")
@click.option(
    "--resume", type=click.Path(file_okay=False), help="Continue the run in this folder from last.pt."
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="rfmml",
    show_default=True,
    help="rfmml (RET + ACF); ablations rfmml-no-ret, rfmml-no-acf; protonet (fixed all-class episodes); "
    "cross-entropy baselines with a linear layer: plain, reweight, resample, logit-adjust.",
)
@click.option("--split", "split_file", type=click.Path(dir_okay=False), help="Reuse a split.json.")
@click.option("--train-frac", type=float, help="Training fraction per class [default: 0.5].")
@click.option("--train-per-class", type=int, help="Training images per class (instead of --train-frac).")
@click.option(
    "--val-per-class", type=int, help="Validation images per class [default: the rest, or half of it]."
)
@click.option("--test-per-class", type=int, help="Test images per class [default: the rest, or half of it].")
@click.option("--minority-classes", type=int, help="Draw this many minority classes with the seed.")
@click.option("--minority", multiple=True, help="A minority class by name (repeatable).")
@click.option("--minority-shots", type=int, help="Training images kept per minority class.")
@click.option(
    "--minority-threshold",
    type=int,
    default=20,
    show_default=True,
    help="Natural imbalance: classes with fewer training images are minority.",
)
@click.option("--n-max", type=int, help="N_max [default: smallest minority training count].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--backbone", type=click.Choice(BACKBONES), help="[default: wide_resnet50_2; synthetic: conv4]")
@click.option(
    "--pretrained/--no-pretrained", default=None, help="ImageNet weights [default: yes; conv4/synthetic: no]."
)
@click.option("--weights", type=click.Path(dir_okay=False), help="Backbone state-dict file.")
@click.option("--image-size", type=int, help="Square input size [default: 224; synthetic: 32].")
@click.option("--distance", type=click.Choice(DISTANCES), default="euclidean", show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--ret-episodes", type=int, help="[default: 80000; synthetic: 500]")
@click.option("--acf-episodes", type=int, help="[default: 2000; synthetic: 200]")
@click.option("--queries", type=int, default=5, show_default=True, help="Queries per class.")
@click.option("--ret-lr", type=float, help="[default: 5e-6; synthetic: 1e-3]")
@click.option("--acf-lr", type=float, help="[default: 1e-6; synthetic: 2e-4]")
@click.option(
    "--augment/--no-augment", default=True, show_default=True, help="Random flips and 90-degree rotations."
)
@click.option(
    "--val-every", type=int, help="Validate every this many episodes [default: 1000; synthetic: 100]."
)
@click.option("--log-every", type=int, help="Log every this many episodes [default: 50; synthetic: 10].")
@click.option("--epochs", type=int, help="Cross-entropy methods: epochs [default: 600; synthetic: 15].")
@click.option("--lr", type=float, help="Cross-entropy methods: Adam lr [default: 1e-4; synthetic: 1e-3].")
@click.option(
    "--lr-step",
    type=int,
    help="Cross-entropy methods: lr / 5 every this many epochs [default: 200; synthetic: 10].",
)
@click.option(
    "--ce-batch", type=int, default=64, show_default=True, help="Cross-entropy methods: batch size."
)
@click.option(
    "--la-tau",
    type=float,
    default=1.0,
    show_default=True,
    help="logit-adjust: strength tau of the adjustment.",
)
@click.option(
    "--init", "init_run", type=click.Path(file_okay=False), help="Start the backbone from this run's best.pt."
)
@click.option(
    "--svm-c", type=float, multiple=True, help="SVM C grid, chosen on validation [default: 0.01 0.1 1 10]."
)
@click.option(
    "--svm-class-weight", type=click.Choice(["balanced", "none"]), default="balanced", show_default=True
)
@click.option("--svm-l2-normalize/--no-svm-l2-normalize", default=True, show_default=True)
@click.option(
    "--batch-size", type=int, default=256, show_default=True, help="Batch size for embedding (evaluation)."
)
@click.option(
    "--workers", type=int, default=0, show_default=True, help="Decode threads (0: one per CPU, at most 16)."
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Decoded-image cache [default: $RFMML_CACHE or ~/.cache/rfmml].",
)
@click.option("--threads", type=int, help="torch CPU threads, 0: torch's default [default: 0; synthetic: 1].")
@click.option("--no-cache", is_flag=True, help="Do not read or write the decoded-image cache.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.pass_context
def command(ctx: click.Context, **opts) -> None:
    """Train an RF-MML embedding (RET on majority classes, then ACF on all classes), or a baseline
    (--method), and evaluate the Proto and SVM heads (and the linear layer of cross-entropy
    baselines) on the test split. Writes RUN/config.json, split.json, metrics.jsonl,
    last.pt, best.pt and eval.json."""
    from rfmml.trainer.run import read_config, run_training

    if opts["resume"]:
        given = [k for k in opts if ctx.get_parameter_source(k) != ParameterSource.DEFAULT]
        extra = [k for k in given if k not in RESUME_OVERRIDES]
        if extra:
            raise InputError(f"--resume takes its settings from the run; drop --{extra[0].replace('_', '-')}")
        config = read_config(opts["resume"]).replace(out=opts["resume"])
        overrides = {k: opts[k] for k in given if k in ("device", "progress", "workers", "threads")}
        if ctx.get_parameter_source("cache_dir") != ParameterSource.DEFAULT or opts["no_cache"]:
            overrides["cache_dir"] = "" if opts["no_cache"] else opts["cache_dir"]
        run_training(config.replace(**overrides), resume=True)
        return
    if not opts["out"]:
        raise InputError("--out RUN is required (or --resume RUN)")
    if opts["split_file"]:
        clash = [
            k
            for k in (
                "train_frac",
                "train_per_class",
                "val_per_class",
                "test_per_class",
                "minority_classes",
                "minority_shots",
            )
            if opts[k] is not None
        ] + (["minority"] if opts["minority"] else [])
        if clash:
            raise InputError(f"--split fixes the split; drop --{clash[0].replace('_', '-')}")
    config = TrainConfig(
        out=opts["out"],
        data=opts["data"],
        method=opts["method"],
        split=opts["split_file"],
        train_frac=opts["train_frac"],
        train_per_class=opts["train_per_class"],
        val_per_class=opts["val_per_class"],
        test_per_class=opts["test_per_class"],
        minority_classes=opts["minority_classes"],
        minority=tuple(opts["minority"]),
        minority_shots=opts["minority_shots"],
        minority_threshold=opts["minority_threshold"],
        n_max=opts["n_max"],
        seed=opts["seed"],
        backbone=opts["backbone"],
        pretrained=opts["pretrained"],
        weights=opts["weights"],
        image_size=opts["image_size"],
        distance=opts["distance"],
        device=opts["device"],
        ret_episodes=opts["ret_episodes"],
        acf_episodes=opts["acf_episodes"],
        queries=opts["queries"],
        ret_lr=opts["ret_lr"],
        acf_lr=opts["acf_lr"],
        augment=opts["augment"],
        val_every=opts["val_every"],
        log_every=opts["log_every"],
        epochs=opts["epochs"],
        lr=opts["lr"],
        lr_step=opts["lr_step"],
        ce_batch=opts["ce_batch"],
        la_tau=opts["la_tau"],
        init=opts["init_run"],
        svm_c=tuple(opts["svm_c"]) or TrainConfig.svm_c,
        svm_class_weight=opts["svm_class_weight"],
        svm_l2_normalize=opts["svm_l2_normalize"],
        threads=opts["threads"],
        batch_size=opts["batch_size"],
        workers=opts["workers"],
        cache_dir="" if opts["no_cache"] else opts["cache_dir"],
        progress=opts["progress"],
    )
    run_training(config)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"rfmml-train: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; return the exit code (0 ok, 2 bad input) instead of exiting."""
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        command.main(args=argv, prog_name="rfmml-train", standalone_mode=False)
        return 0
    except click.exceptions.Exit as done:  # --help
        return done.exit_code
    except click.ClickException as error:
        print(f"rfmml-train: error: {error.format_message()}", file=sys.stderr)
        return 2
    except click.Abort:
        print("rfmml-train: aborted", file=sys.stderr)
        return 130
    except (InputError, CheckpointError) as error:
        print(f"rfmml-train: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable --out, a full disk: say which file, keep last.pt
        print(f"rfmml-train: error: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous


def cli() -> None:
    """Console-script entry point (``rfmml-train``): exits with :func:`main`'s code."""
    sys.exit(main(sys.argv[1:]))
