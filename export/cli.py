"""``rfmml-export``: a training run -> model.onnx + model.npz (and int8 / fp16 pairs).

``main(argv) -> int`` runs the command in-process (tests); ``cli`` is the console script. Bad input
is one line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from rfmml.export.pipeline import DEFAULT_MIN_AGREEMENT, ExportOptions

EXAMPLES = """
\b
Examples:
  rfmml-export --run runs/aid-s10 model.onnx             # model.onnx + model.npz, from RUN/best.pt
  rfmml-export --run runs/aid-s10 model.onnx --int8      # also model.int8.onnx + model.int8.npz
  rfmml-export --run runs/aid-s10 model.onnx --checkpoint last.pt --no-svm
  rfmml-export --run runs/aid-s10 model.onnx --data /mnt/AID --force   # data folder moved
"""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions whose message is a one-line explanation for the user (exit code 2)."""
    from rfmml.export.onnx_export import ExportError
    from rfmml.export.parity import ParityError
    from rfmml.runtime.artifact import ArtifactError
    from rfmml.runtime.imageio import ImageReadError
    from rfmml.trainer.checkpoint import CheckpointError
    from rfmml.trainer.errors import InputError
    from rfmml.trainer.models import WeightsUnavailableError

    return (
        ExportError,
        ParityError,
        ArtifactError,
        ImageReadError,
        CheckpointError,
        InputError,
        WeightsUnavailableError,
        OSError,  # FileExistsError (no --force), permissions, a full disk: one line, nothing half-written
    )


def execute(options: ExportOptions) -> int:
    """Run an export; print a one-line error and return 2 on bad input, 0 on success."""
    from rfmml.export.pipeline import run_export

    errors = _user_errors()
    try:
        result = run_export(options, log=lambda line: click.echo(line, err=True))
    except errors as error:
        message = " ".join(str(error).split()) or type(error).__name__
        click.echo(f"rfmml-export: error: {message}", err=True)
        return 2
    click.echo(f"done in {result.seconds:.1f} s: " + ", ".join(str(p) for p in result.written))
    return 0


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXAMPLES
)
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--run", "run", required=True, type=click.Path(path_type=Path), help="Run folder of rfmml-train."
)
@click.option("--checkpoint", default="best.pt", show_default=True, help="Checkpoint file in the run folder.")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Data folder of the run, when it is no longer at split.json's data_root (the heads need the "
    "training images).",
)
@click.option("--svm/--no-svm", default=True, show_default=True, help="Fit the linear SVM head too.")
@click.option(
    "--svm-class-weight",
    type=click.Choice(["balanced", "none"]),
    help="SVM class weights [default: the run's setting, balanced unless the run chose none].",
)
@click.option(
    "--svm-c",
    "svm_c",
    multiple=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Candidate C for the SVM (repeat); the best on validation is kept [default: the run's grid].",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Also write MODEL.int8.onnx: static QDQ per-channel int8, "
    "calibrated on training images, checked against the float model on validation images.",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Also write MODEL.fp16.onnx (uint8 in, float32 out) for GPU "
    "deployment; on a CPU fp16 runs slower than fp32 (0.6-0.9x, see BENCHMARKS.md).",
)
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@click.option(
    "--tolerance",
    default=1e-4,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Max relative difference torch vs onnxruntime (max |a-b| / max |a|); beyond it, nothing is written.",
)
@click.option(
    "--min-agreement",
    default=DEFAULT_MIN_AGREEMENT,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="int8/fp16: minimum fraction of validation images whose "
    "predicted class equals the float model's, under each head.",
)
@click.option(
    "--parity-images",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training images for the torch/onnxruntime parity proof.",
)
@click.option(
    "--calibration-images",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training images (class-balanced) for int8 calibration.",
)
@click.option("--opset", default=18, show_default=True, type=click.IntRange(min=18), help="ONNX opset.")
@click.option(
    "--batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Batch size for embedding the training and validation images.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars.")
@click.pass_context
def cli(ctx: click.Context, **values) -> None:
    """Export a training run to OUTPUT (model.onnx) and its head (model.npz beside it).

    The ONNX model takes uint8 images [batch, H, W, 3] and returns float32 embeddings [batch, D]; the
    head holds the class prototypes (mean embedding of all training images, computed with the
    exported model through onnxruntime) and a one-vs-rest linear SVM (C chosen on validation). A
    torch-vs-onnxruntime parity check runs on training images; beyond tolerance nothing is written.
    Files are written atomically, all pairs or none.
    """
    values["svm_c"] = tuple(values["svm_c"])
    code = execute(ExportOptions(**values))
    if code:
        ctx.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rfmml-export`` with ``argv`` in-process; return the exit code."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None, prog_name="rfmml-export", standalone_mode=False
        )
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("rfmml-export: aborted", err=True)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
