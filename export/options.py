"""The settings of one export and their limits (torch-free: ``rfmml-export --help`` reads only this).

``ExportOptions`` is what the command line parses into and what ``rfmml.export.pipeline.run_export``
takes. The opset range is the exporter's: torch 2.14's ``torch.onnx`` declares ``ONNX_MAX_OPSET = 23``
(``torch.onnx._constants``; a test keeps the two equal), and the artifact contract asks for 18 or
more. Beyond 28 (the newest opset of the installed onnx) torch silently falls back to opset 18, which
is why the range is checked here and the exported opset again in ``onnx_export.check_onnx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MIN_OPSET = 18  # the artifact contract's minimum
MAX_OPSET = 23  # torch.onnx._constants.ONNX_MAX_OPSET of the pinned torch
DEFAULT_OPSET = 18

# int8 / fp16 against float on the validation images: fraction of equal predictions under each head
# below which the export fails. Measured for int8 on conv4 EuroSAT runs: 95.5-100 % on tiny runs
# (seeds 0-2, 200 validation images, models at 40-55 % accuracy with many near-ties), 99.6-99.8 % on
# a 71 % run (1000 images); on a trained efficientnet_lite0 (--tune head) 96.9 / 97.5 % (proto /
# svm), while the same export with its first convolution quantized gave 71-75 % (an easy slip; a
# broken quantization falls towards chance). See BENCHMARKS.md "Inference speed (issue 3)" and
# "int8 on a trained efficientnet_lite0".
DEFAULT_MIN_AGREEMENT = 0.90
DEFAULT_TOLERANCE = 1e-4  # max relative difference torch vs onnxruntime fp32 (measured ~5e-7)

# int8 weight bits outside the depthwise convolutions (rfmml.export.quantize.int8_settings): 7 is
# safe on every CPU, 8 is for CPUs with VNNI / ARM dot-product (AVX2-only x86 can saturate)
INT8_WEIGHT_BITS = (7, 8)
DEFAULT_INT8_WEIGHTS = 7

PRECISIONS = ("int8", "fp16")  # the reduced-precision variants, in the order they are written


@dataclass(frozen=True)
class ExportOptions:
    """Every setting of one export (the CLI parses into this)."""

    run: Path
    output: Path
    checkpoint: str = "best.pt"
    data: Path | None = None  # overrides the split's data_root (a moved data folder)
    svm: bool = True
    svm_class_weight: str | None = None  # None: the run's setting (balanced by default)
    svm_c: tuple[float, ...] = ()  # candidates for C; empty: the run's grid
    int8: bool = False
    int8_weights: int = DEFAULT_INT8_WEIGHTS  # one of INT8_WEIGHT_BITS
    fp16: bool = False
    force: bool = False
    tolerance: float = DEFAULT_TOLERANCE
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # int8 / fp16 vs fp32, on validation images
    parity_images: int = 64
    calibration_images: int = 256
    opset: int = DEFAULT_OPSET
    batch_size: int = 64
    progress: bool = True

    @property
    def precisions(self) -> tuple[str, ...]:
        """The reduced-precision variants asked for ("int8", "fp16"), in writing order."""
        wanted = {"int8": self.int8, "fp16": self.fp16}
        return tuple(p for p in PRECISIONS if wanted[p])

    @property
    def model_paths(self) -> list[Path]:
        """Every model file this export writes: OUTPUT first, then its variants."""
        output = Path(self.output)
        return [output] + [variant_path(output, precision) for precision in self.precisions]


def variant_path(output: Path, precision: str) -> Path:
    """model.onnx -> model.int8.onnx / model.fp16.onnx (heads beside them with .npz)."""
    return output.with_name(f"{output.stem}.{precision}{output.suffix}")
