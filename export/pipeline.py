"""``export_run``: a training run -> ``model.onnx`` + ``model.npz`` (and int8 / fp16 pairs).

Steps: load the run (rfmml.trainer.run.load_run), decode its training and validation images
(rfmml.trainer.data.load_part), export the float model, embed every training and validation image
WITH THE EXPORTED MODEL through onnxruntime (so the prototypes are the means of exactly what the
runtime will compute), fit the heads (rfmml.trainer.heads; SVM C chosen on validation), prove parity
torch vs onnxruntime on training images (fatal beyond tolerance), optionally quantize / halve and
compare against the float model on the validation images, then write every pair atomically.
Nothing is written unless every check passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfmml.export import heads_fit
from rfmml.export.onnx_export import DEFAULT_OPSET, ExportError, export_onnx
from rfmml.export.parity import (
    ParityReport,
    check,
    compare,
    embed_all,
    embed_in_batches,
    ort_embedder,
    ort_session,
    parity_batches,
    torch_embedder,
)
from rfmml.export.runinput import check_run_folder, load_inputs
from rfmml.export.writer import existing_targets, write_pairs
from rfmml.runtime.artifact import Head

# int8 / fp16 against float on the validation images: fraction of equal predictions under each head
# below which the export fails. Measured for int8 on conv4 EuroSAT runs: 95.5-100 % on tiny runs
# (seeds 0-2, 200 validation images, models at 40-55 % accuracy with many near-ties), 99.6-99.8 % on
# a 71 % run (1000 images); a broken quantization falls towards chance. See BENCHMARKS.md
# "Inference speed (issue 3)".
DEFAULT_MIN_AGREEMENT = 0.90


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
    fp16: bool = False
    force: bool = False
    tolerance: float = 1e-4  # max relative difference torch vs onnxruntime fp32
    min_agreement: float = DEFAULT_MIN_AGREEMENT  # int8 / fp16 vs fp32, on validation images
    parity_images: int = 64
    calibration_images: int = 256
    opset: int = DEFAULT_OPSET
    batch_size: int = 64
    progress: bool = True


@dataclass(frozen=True)
class ExportResult:
    """What was written: model paths -> heads (as written, digest included), and the reports."""

    written: dict[Path, Head]
    parity: ParityReport
    variants: dict[str, ParityReport] = field(default_factory=dict)
    val_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # precision -> head -> acc
    seconds: float = 0.0


def variant_path(output: Path, precision: str) -> Path:
    """model.onnx -> model.int8.onnx / model.fp16.onnx (heads beside them with .npz)."""
    return output.with_name(f"{output.stem}.{precision}{output.suffix}")


def balanced_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` images taken round-robin over classes (random within a class), sorted."""
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < min(n, len(labels)):
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop()))
    return np.sort(np.array(chosen, dtype=np.int64))


def export_run(run_dir: str | Path, output: str | Path, log: Callable[[str], None] = print, **settings):
    """Convenience entry: ``export_run("runs/x", "out/model.onnx", int8=True)`` -> ExportResult."""
    return run_export(ExportOptions(run=Path(run_dir), output=Path(output), **settings), log=log)


def run_export(options: ExportOptions, log: Callable[[str], None] = print) -> ExportResult:
    """Run the whole export; raise ExportError / ParityError / run errors (one line) on failure."""
    started = time.perf_counter()
    check_run_folder(Path(options.run), options.checkpoint)  # the run first: the likelier mistake
    output = Path(options.output)
    if output.suffix != ".onnx":
        raise ExportError(
            f"{output}: the model file name must end in .onnx (the head goes beside it as .npz)"
        )
    targets = [output] + [
        variant_path(output, p) for p, on in (("int8", options.int8), ("fp16", options.fp16)) if on
    ]
    existing = existing_targets(targets)
    if existing and not options.force:
        raise ExportError(f"{existing[0]} exists; pass --force to overwrite")

    inputs = load_inputs(options.run, options.checkpoint, options.data, options.progress, log)
    model, input_size = inputs.model, inputs.input_size
    log(f"exporting {inputs.backbone} @ {input_size[0]}x{input_size[1]} (opset {options.opset}) ...")
    float_bytes = export_onnx(model, input_size, opset=options.opset)
    session = ort_session(float_bytes)
    embed_ort = ort_embedder(session)
    bar = "embedding {} images (onnxruntime fp32)" if options.progress else None
    train_emb = embed_all(embed_ort, inputs.train_images, options.batch_size, bar and bar.format("train"))
    val_emb = embed_all(embed_ort, inputs.val_images, options.batch_size, bar and bar.format("val"))

    overrides = {"svm_c": options.svm_c} if options.svm_c else {}
    if options.svm_class_weight:
        overrides["svm_class_weight"] = options.svm_class_weight
    fitted = heads_fit.fit_heads(
        train_emb,
        inputs.train_labels,
        val_emb,
        inputs.val_labels,
        inputs.split,
        inputs.config.replace(**overrides),
        input_size=input_size,
        svm=options.svm,
    )
    for line in fitted.log_lines():
        log(line)

    pick = balanced_subset(inputs.train_labels, options.parity_images, seed=0)
    images = inputs.train_images[pick]
    sizes = parity_batches(len(images))
    reference = embed_in_batches(torch_embedder(model), images, sizes)
    candidate = embed_in_batches(embed_ort, images, sizes)
    parity = compare(
        reference,
        candidate,
        fitted.scorers,
        reference_name="torch fp32",
        candidate_name="onnxruntime fp32",
        batch_sizes=sizes,
        rel_tolerance=options.tolerance,
        min_agreement=1.0,
    )
    log(f"parity: {parity.summary()}")
    check(parity, "parity check (torch vs onnxruntime)")

    # int8 / fp16 are checked against the float model on the validation images (or, when the split
    # has none, on the parity images)
    if len(inputs.val_labels):
        check_images, check_labels, check_emb = inputs.val_images, inputs.val_labels, val_emb
    else:
        check_images, check_labels, check_emb = images, inputs.train_labels[pick], candidate
    val_accuracy = {"fp32": fitted.val_accuracy}
    metadata = {**inputs.metadata, **fitted.metadata, "parity": parity.to_dict(), "precision": "fp32"}
    pairs: list[tuple[Path, bytes, dict]] = [(output, float_bytes, metadata)]
    variants: dict[str, ParityReport] = {}
    for precision in [p for p, wanted in (("int8", options.int8), ("fp16", options.fp16)) if wanted]:
        if precision == "int8":
            log(
                f"quantizing to int8 (static QDQ, per-channel, calibrated on {options.calibration_images} "
                "training images) ..."
            )
            pick_calibration = balanced_subset(inputs.train_labels, options.calibration_images, 1)
            data = _quantize(float_bytes, inputs.train_images[pick_calibration])
        else:
            from rfmml.export.quantize import export_fp16

            log("exporting fp16 (for GPUs: on a CPU fp16 is slower than fp32, see BENCHMARKS.md) ...")
            data = export_fp16(model, input_size, options.opset)
        sizes = [
            min(options.batch_size, len(check_emb) - s) for s in range(0, len(check_emb), options.batch_size)
        ]
        variant_emb = embed_in_batches(ort_embedder(ort_session(data)), check_images, sizes)
        report = compare(
            check_emb,
            variant_emb,
            fitted.scorers,
            reference_name="onnxruntime fp32",
            candidate_name=f"onnxruntime {precision}",
            batch_sizes=sizes,
            min_agreement=options.min_agreement,
        )
        val_accuracy[precision] = fitted.accuracy(variant_emb, check_labels)
        log(f"{precision}: {report.summary()}")
        log(
            f"{precision}: validation accuracy {_fmt(val_accuracy[precision])} "
            f"(fp32: {_fmt(fitted.val_accuracy)})"
        )
        check(report, f"{precision} check (against the float model; lower --min-agreement to accept)")
        variants[precision] = report
        meta = {**metadata, "precision": precision, "parity_vs_fp32": report.to_dict()}
        pairs.append((variant_path(output, precision), data, meta))

    for _, _, meta in pairs:
        meta["val_accuracy"] = dict(val_accuracy)  # every precision measured, in every head
    heads = write_pairs([(path, data, fitted.head_with(meta)) for path, data, meta in pairs], options.force)
    written = {path: head for (path, _, _), head in zip(pairs, heads, strict=True)}
    for path in written:
        log(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) + {path.with_suffix('.npz').name}")
    return ExportResult(written, parity, variants, val_accuracy, time.perf_counter() - started)


def _quantize(float_bytes: bytes, calibration: np.ndarray) -> bytes:
    from rfmml.export.quantize import quantize_int8

    return quantize_int8(float_bytes, calibration)


def _fmt(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{head} {100 * value:.2f}%" for head, value in accuracy.items())


__all__ = ["ExportOptions", "ExportResult", "export_run", "run_export", "variant_path"]
