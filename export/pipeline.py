"""``run_export``: a training run -> ``model.onnx`` + ``model.npz`` (and int8 / fp16 pairs).

Steps: check the request (run folder, output names, writable targets), load the run
(``run_inputs.load_inputs``), export the float model, embed every training and validation image
WITH THE EXPORTED MODEL through onnxruntime (so the prototypes are the means of exactly what the
runtime will compute), fit the head (``fit_head``; SVM C chosen on validation), prove parity torch vs
onnxruntime on training images (fatal beyond tolerance), optionally quantize / halve and compare
against the float model on the validation images, then write every pair atomically (``writer``).
Nothing is written unless every check passed. Every agreement is measured with the runtime's scorer.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rfmml.export.onnx_export import export_onnx
from rfmml.export.options import ExportOptions, variant_path
from rfmml.export.parity import (
    ParityReport,
    check,
    compare,
    embed_all,
    embed_in_batches,
    head_accuracy,
    head_scorers,
    ort_embedder,
    ort_session,
    parity_batches,
    torch_embedder,
)
from rfmml.export.run_inputs import RunInputs, check_run_folder, load_inputs
from rfmml.export.writer import check_targets, write_pairs
from rfmml.runtime.artifact import Head
from rfmml.runtime.errors import ExportError

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportResult:
    """What was written: model paths -> heads (as written, digest included), and the reports."""

    written: dict[Path, Head]
    parity: ParityReport
    variants: dict[str, ParityReport] = field(default_factory=dict)
    val_accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # precision -> head -> acc
    seconds: float = 0.0


@dataclass(frozen=True)
class _CheckSet:
    """Images a reduced-precision variant is checked on, with their labels and float embeddings."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int64 [N]
    float_embeddings: np.ndarray  # float32 [N, D], onnxruntime fp32


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


def export_run(run_dir: str | Path, output: str | Path, log: Log = print, **settings) -> ExportResult:
    """Convenience entry: ``export_run("runs/x", "out/model.onnx", int8=True)`` -> ExportResult."""
    return run_export(ExportOptions(run=Path(run_dir), output=Path(output), **settings), log=log)


def run_export(options: ExportOptions, log: Log = print) -> ExportResult:
    """Run the whole export; raise RfmmlError subclasses (one line) on bad input or failed checks."""
    started_wall, started = time.time(), time.perf_counter()
    check_request(options)
    inputs = load_inputs(options.run, options.checkpoint, options.data, log)
    height, width = inputs.input_size
    log(f"exporting {inputs.backbone} @ {height}x{width} (opset {options.opset}) ...")
    float_bytes = export_onnx(inputs.model, inputs.input_size, opset=options.opset)
    embed_ort = ort_embedder(ort_session(float_bytes))
    bar = "embedding {} images (onnxruntime fp32)" if options.progress else None
    train_emb = embed_all(embed_ort, inputs.train_images, options.batch_size, bar and bar.format("train"))
    val_emb = embed_all(embed_ort, inputs.val_images, options.batch_size, bar and bar.format("val"))
    head = _fit_head(inputs, options, train_emb, val_emb)
    val_accuracy = {"fp32": head_accuracy(head, val_emb, inputs.val_labels)}
    for line in describe_head(head, val_accuracy["fp32"]):
        log(line)
    parity, check_set = _prove_parity(inputs, options, embed_ort, head, val_emb, log)

    metadata = {**inputs.metadata, **head.metadata, "parity": parity.to_dict(), "precision": "fp32"}
    pairs: list[tuple[Path, bytes, dict]] = [(Path(options.output), float_bytes, metadata)]
    variants: dict[str, ParityReport] = {}
    for precision in options.precisions:
        data, report, val_accuracy[precision] = _variant(
            precision, float_bytes, inputs, options, head, check_set, log
        )
        variants[precision] = report
        meta = {**metadata, "precision": precision, "parity_vs_fp32": report.to_dict()}
        pairs.append((variant_path(Path(options.output), precision), data, meta))

    finished = [
        (path, data, dataclasses.replace(head, metadata={**meta, "val_accuracy": dict(val_accuracy)}))
        for path, data, meta in pairs  # every precision measured, in every head
    ]
    heads = write_pairs(finished, options.force, started=started_wall)
    written = {path: written_head for (path, _, _), written_head in zip(pairs, heads, strict=True)}
    for path in written:
        log(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) + {path.with_suffix('.npz').name}")
    return ExportResult(written, parity, variants, val_accuracy, time.perf_counter() - started)


def check_request(options: ExportOptions) -> None:
    """The checks that need no model: the run folder first (the likelier mistake), then the output
    name and that every pair can be written (exists without --force, unwritable folder)."""
    check_run_folder(Path(options.run), options.checkpoint)
    output = Path(options.output)
    if output.suffix != ".onnx":
        raise ExportError(
            f"{output}: the model file name must end in .onnx (the head goes beside it as .npz)"
        )
    check_targets(options.model_paths, options.force)


def _fit_head(inputs: RunInputs, options: ExportOptions, train_emb: np.ndarray, val_emb: np.ndarray) -> Head:
    """The head (prototypes, and the SVM unless --no-svm) on the onnxruntime fp32 embeddings, with the
    run's SVM settings overridden by --svm-c / --svm-class-weight; its fitting record in metadata."""
    from rfmml.export.fit_head import fit_export_head

    overrides: dict[str, object] = {"svm_c": options.svm_c} if options.svm_c else {}
    if options.svm_class_weight:
        overrides["svm_class_weight"] = options.svm_class_weight
    return fit_export_head(
        train_emb,
        inputs.train_labels,
        val_emb,
        inputs.val_labels,
        inputs.split,
        inputs.config.replace(**overrides),
        input_size=inputs.input_size,
        svm=options.svm,
    )


def describe_head(head: Head, val_accuracy: dict[str, float]) -> list[str]:
    """Log lines: the prototypes, how the SVM's C was chosen, the validation accuracy per kind."""
    lines = [f"prototypes: {len(head.class_names)} classes x {head.embedding_dim} dims ({head.distance})"]
    svm = head.metadata.get("svm")
    if svm:
        grid = ", ".join(f"C={c}: {100 * a:.2f}%" for c, a in svm["val_accuracy_by_c"].items())
        lines.append(
            f"svm: one-vs-rest LinearSVC, class_weight={svm['class_weight']}, l2_normalize="
            f"{svm['l2_normalize']}; C={svm['C']:g} chosen on validation ({grid or 'no validation images'})"
        )
    if val_accuracy:
        lines.append(f"validation accuracy: {_fmt(val_accuracy)}")
    return lines


def _prove_parity(
    inputs: RunInputs, options: ExportOptions, embed_ort, head: Head, val_emb: np.ndarray, log: Log
) -> tuple[ParityReport, _CheckSet]:
    """torch vs onnxruntime fp32 on class-balanced training images in batches of 1, 2, 7, ... (fatal
    beyond --tolerance or on any flipped class); also the set the variants are checked on: the
    validation images, or the parity images when the split has none."""
    pick = balanced_subset(inputs.train_labels, options.parity_images, seed=0)
    images = inputs.train_images[pick]
    sizes = parity_batches(len(images))
    reference = embed_in_batches(torch_embedder(inputs.model), images, sizes)
    candidate = embed_in_batches(embed_ort, images, sizes)
    parity = compare(
        reference,
        candidate,
        head_scorers(head),
        reference_name="torch fp32",
        candidate_name="onnxruntime fp32",
        batch_sizes=sizes,
        rel_tolerance=options.tolerance,
        min_agreement=1.0,
    )
    log(f"parity: {parity.summary()}")
    check(parity, "parity check (torch vs onnxruntime)")
    if len(inputs.val_labels):
        return parity, _CheckSet(inputs.val_images, inputs.val_labels, val_emb)
    return parity, _CheckSet(images, inputs.train_labels[pick], candidate)


def _variant(
    precision: str,
    float_bytes: bytes,
    inputs: RunInputs,
    options: ExportOptions,
    head: Head,
    check_set: _CheckSet,
    log: Log,
) -> tuple[bytes, ParityReport, dict[str, float]]:
    """Make the int8 or fp16 model and measure it against the float one on ``check_set``: (its bytes,
    the agreement report, its accuracy per head kind); ExportError below --min-agreement."""
    if precision == "int8":
        log(
            f"quantizing to int8 (static QDQ, per-channel, {options.int8_weights}-bit weights, calibrated "
            f"on {options.calibration_images} training images) ..."
        )
        pick = balanced_subset(inputs.train_labels, options.calibration_images, 1)
        data = _quantize(float_bytes, inputs.train_images[pick], options.int8_weights)
    else:
        from rfmml.export.quantize import export_fp16

        log("exporting fp16 (for GPUs: on a CPU fp16 is slower than fp32, see BENCHMARKS.md) ...")
        data = export_fp16(inputs.model, inputs.input_size, options.opset)
    n = len(check_set.labels)
    sizes = [min(options.batch_size, n - start) for start in range(0, n, options.batch_size)]
    embeddings = embed_in_batches(ort_embedder(ort_session(data)), check_set.images, sizes)
    report = compare(
        check_set.float_embeddings,
        embeddings,
        head_scorers(head),
        reference_name="onnxruntime fp32",
        candidate_name=f"onnxruntime {precision}",
        batch_sizes=sizes,
        min_agreement=options.min_agreement,
    )
    accuracy = head_accuracy(head, embeddings, check_set.labels)
    log(f"{precision}: {report.summary()}")
    float_accuracy = head_accuracy(head, check_set.float_embeddings, check_set.labels)
    log(f"{precision}: validation accuracy {_fmt(accuracy)} (fp32: {_fmt(float_accuracy)})")
    check(report, f"{precision} check (against the float model; lower --min-agreement to accept)")
    return data, report, accuracy


def _quantize(float_bytes: bytes, calibration: np.ndarray, weight_bits: int) -> bytes:
    from rfmml.export.quantize import int8_settings, quantize_int8

    return quantize_int8(float_bytes, calibration, settings=int8_settings(weight_bits))


def _fmt(accuracy: dict[str, float]) -> str:
    return ", ".join(f"{head} {100 * value:.2f}%" for head, value in accuracy.items())


__all__ = ["ExportOptions", "ExportResult", "check_request", "export_run", "run_export", "variant_path"]
