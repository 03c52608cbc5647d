"""``rfmml-export``: a training run -> model.onnx + model.npz (and int8 / fp16 pairs).

click only parses and range-checks the flags into :class:`~rfmml.export.options.ExportOptions`; the
work is ``rfmml.export.pipeline.run_export``, imported when the command runs, so ``--help`` and a
bad flag never load torch. Errors, exit codes and Ctrl-C are the shared shell's
(``rfmml.runtime.cli_shell``): one ``rfmml-export: error:`` line and exit 2 for bad input.
``main(argv) -> int`` runs the command in-process (tests); ``cli`` is the console script.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from rfmml.export.options import (
    DEFAULT_INT8_WEIGHTS,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_TOLERANCE,
    INT8_WEIGHT_BITS,
    MAX_OPSET,
    MIN_OPSET,
    ExportOptions,
)
from rfmml.runtime.cli_shell import entry_point, run_command
from rfmml.trainer.config_fields import FiniteFloat  # click's FloatRange lets nan and inf through

PROG = "rfmml-export"
# --parity-images / --calibration-images: more than this many images adds time, not evidence.
MAX_IMAGES = 65536
EXAMPLES = """
\b
Examples:
  rfmml-export --run runs/aid-s10 model.onnx             # model.onnx + model.npz, from RUN/best.pt
  rfmml-export --run runs/aid-s10 model.onnx --int8      # also model.int8.onnx + model.int8.npz
  rfmml-export --run runs/aid-s10 model.onnx --int8 --int8-weights 8   # VNNI / ARM CPUs only
  rfmml-export --run runs/aid-s10 model.onnx --checkpoint last.pt --no-svm
  rfmml-export --run runs/aid-s10 model.onnx --data /mnt/AID --force   # data folder moved

\b
Exit codes: 0 written; 2 bad input or a failed check; 130 interrupted. Only 0 writes anything.
"""


def _checkpoint_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("needs a file name, e.g. best.pt or last.pt")
    return value


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EXAMPLES
)
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--run", "run", required=True, type=click.Path(path_type=Path), help="Run folder of rfmml-train."
)
@click.option(
    "--checkpoint",
    default="best.pt",
    show_default=True,
    callback=_checkpoint_name,
    help="Checkpoint file in the run folder (or an absolute path).",
)
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
    type=FiniteFloat(min=0, min_open=True),
    help="Candidate C for the SVM (repeat); the best on validation is kept [default: the run's grid].",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Also write MODEL.int8.onnx: static QDQ per-channel int8 calibrated on training images "
    "(pre-processing, first conv and first depthwise conv float, 8-bit depthwise / 7-bit other "
    "weights, bias correction), checked against the float model on validation images.",
)
@click.option(
    "--int8-weights",
    "int8_weights",
    default=DEFAULT_INT8_WEIGHTS,
    show_default=True,
    type=click.Choice([str(b) for b in INT8_WEIGHT_BITS]),
    callback=lambda _ctx, _param, value: int(value),
    help="int8 weight bits outside the depthwise convs. 7: safe on every CPU. 8 (GPTQ-rounded, "
    "~99 % agreement on a trained efficientnet_lite0 vs ~97 %): only for CPUs with VNNI (AVX-512 "
    "VNNI, AVX-VNNI) or ARM dot-product; AVX2-only x86 CPUs can saturate.",
)
@click.option(
    "--fp16",
    is_flag=True,
    help="Also write MODEL.fp16.onnx (uint8 in, float32 out) for GPU "
    "deployment; on a CPU fp16 runs slower than fp32 (0.6-0.9x, see BENCHMARKS.md).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite existing output pairs (each written whole, or the old one left as it was).",
)
@click.option(
    "--tolerance",
    default=DEFAULT_TOLERANCE,
    show_default=True,
    type=FiniteFloat(min=0),
    help="Max relative difference torch vs onnxruntime (max |a-b| / max |a|); beyond it, nothing is written.",
)
@click.option(
    "--min-agreement",
    default=DEFAULT_MIN_AGREEMENT,
    show_default=True,
    type=FiniteFloat(0, 1),
    help="int8/fp16: minimum fraction of validation images whose "
    "predicted class equals the float model's, under each head.",
)
@click.option(
    "--parity-images",
    default=64,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_IMAGES),
    help="Training images for the torch/onnxruntime parity proof.",
)
@click.option(
    "--calibration-images",
    default=256,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_IMAGES),
    help="Training images (class-balanced) for int8 calibration.",
)
@click.option(
    "--opset",
    default=DEFAULT_OPSET,
    show_default=True,
    type=click.IntRange(MIN_OPSET, MAX_OPSET),
    help=f"ONNX opset ({MIN_OPSET}-{MAX_OPSET}: the contract's minimum to the exporter's maximum).",
)
@click.option(
    "--batch-size",
    default=64,
    show_default=True,
    type=click.IntRange(min=1, max=1024),
    help="Batch size for embedding the training and validation images.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars.")
def export_command(**values) -> None:
    """Export a training run to OUTPUT (model.onnx) and its head (model.npz beside it).

    The ONNX model takes uint8 images [batch, H, W, 3] and returns float32 embeddings [batch, D]; the
    head holds the class prototypes (mean embedding of all training images, computed with the
    exported model through onnxruntime) and a one-vs-rest linear SVM (C chosen on validation). A
    torch-vs-onnxruntime parity check runs on training images; beyond tolerance nothing is written.
    Files are written atomically, all pairs or none.
    """
    from rfmml.export.pipeline import run_export

    values["svm_c"] = tuple(values["svm_c"])
    result = run_export(ExportOptions(**values), log=lambda line: click.echo(line, err=True))
    click.echo(f"done in {result.seconds:.1f} s: " + ", ".join(str(p) for p in result.written))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rfmml-export`` with ``argv`` (None: ``sys.argv[1:]``) in-process; return the exit code."""
    return run_command(export_command, argv, PROG)


cli = entry_point(export_command, PROG)

if __name__ == "__main__":
    raise SystemExit(main())
