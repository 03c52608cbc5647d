"""int8 settings on a trained model: top-1 agreement with fp32 (proto / svm) and speed, side by side.

    .venv/bin/rfmml-export --run RUN /tmp/x/model.onnx            # the fp32 pair (model + head)
    .venv/bin/python benchmarks/int8_lite0.py --run RUN --model /tmp/x/model.onnx \\
        --settings first_dw,all_dw,all_dw_8bit --json /tmp/x/int8.json
    .venv/bin/python benchmarks/int8_lite0.py --run RUN --model /tmp/x/model.onnx --scan all_dw

For every named setting (``SETTINGS``): quantize the exported fp32 model with
``rfmml.export.quantize.quantize_int8`` on class-balanced training images (as ``rfmml-export --int8``
picks them), embed the run's validation images and ``--test-images`` class-balanced test images
(never used for calibration) with fp32 and int8 onnxruntime, and report the top-1 agreement of the
exported heads, the minimum cosine, the accuracy of both, and img/s of fp32 and int8 timed
round-robin on the same batch (``inference.time_round_robin``; the machine is shared, read ratios).

``--scan SETTING``: per-layer sensitivity of that setting: each Conv/Gemm it quantizes is kept float
alone in turn, and the agreement / mean cosine that gives is printed (the nodes that gain most are
the candidates for ``Int8Settings.float_nodes``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
from inference import time_round_robin  # benchmarks/inference.py

from rfmml.export.parity import compare, embed_all, head_scorers, ort_embedder, ort_session
from rfmml.export.pipeline import balanced_subset
from rfmml.export.quantize import Int8Settings, int8_settings, quantize_int8
from rfmml.runtime.artifact import load_head

# name -> (settings, calibration images); the "first_dw_*" variants of calibration and activations
# keep 7-bit depthwise weights, as they were measured (BENCHMARKS.md)
SETTINGS: dict[str, tuple[Int8Settings, int]] = {
    "default": (Int8Settings(), 256),  # rfmml-export --int8
    "first_dw": (Int8Settings(float_depthwise="first", bias_correction=False), 256),
    "no_dw": (Int8Settings(bias_correction=False, float_depthwise="none"), 256),
    "all_dw": (Int8Settings(bias_correction=False, float_depthwise="all"), 256),
    "first_dw_8bit": (Int8Settings(bias_correction=False, float_depthwise="first", reduce_range=False), 256),
    "first_dw_sym": (
        Int8Settings(
            full_range_depthwise=False,
            bias_correction=False,
            float_depthwise="first",
            symmetric_activations=True,
        ),
        256,
    ),
    "first_dw_pct": (
        Int8Settings(
            full_range_depthwise=False,
            bias_correction=False,
            float_depthwise="first",
            calibration="percentile",
        ),
        256,
    ),
    "first_dw_entropy": (
        Int8Settings(
            full_range_depthwise=False, bias_correction=False, float_depthwise="first", calibration="entropy"
        ),
        256,
    ),
    "first_dw_calib1024": (
        Int8Settings(full_range_depthwise=False, bias_correction=False, float_depthwise="first"),
        1024,
    ),
    "all_dw_8bit": (Int8Settings(bias_correction=False, float_depthwise="all", reduce_range=False), 256),
    "first_dw_7bit": (
        Int8Settings(bias_correction=False, float_depthwise="first", full_range_depthwise=False),
        256,
    ),
    "no_dw_dw8": (Int8Settings(bias_correction=False, float_depthwise="none"), 256),
    "first_dw_bc": (Int8Settings(float_depthwise="first", bias_correction=True), 256),
    "first_dw_8bit_bc": (
        Int8Settings(float_depthwise="first", reduce_range=False, bias_correction=True),
        256,
    ),
    "first_dw_bc_calib1024": (Int8Settings(float_depthwise="first", bias_correction=True), 1024),
    "first_dw_8bit_bc_calib1024": (
        Int8Settings(float_depthwise="first", reduce_range=False, bias_correction=True),
        1024,
    ),
    # the nodes that gained most in `--scan default` (this run's names; chosen on the validation images)
    "default_scan_top3": (Int8Settings(float_nodes=("node_Conv_850", "node_Conv_918", "node_Conv_919")), 256),
    "8bit_bc_scan_top3": (
        Int8Settings(reduce_range=False, float_nodes=("node_Conv_850", "node_Conv_918", "node_Conv_919")),
        256,
    ),
    "default_gptq": (Int8Settings(rounding="gptq"), 256),
    "8bit_bc_gptq": (int8_settings(8), 256),  # rfmml-export --int8 --int8-weights 8
    "first_dw_drop_act": (
        Int8Settings(bias_correction=False, float_depthwise="first", keep_activations=False),
        256,
    ),
    "all_dw_drop_act": (
        Int8Settings(bias_correction=False, float_depthwise="all", keep_activations=False),
        256,
    ),
    "no_dw_8bit": (Int8Settings(bias_correction=False, float_depthwise="none", reduce_range=False), 256),
}


def load_images(run: Path, test_images: int):
    """(calibration pool: train images + labels, evaluation images + labels) of the run, decoded as
    its training decoded them; evaluation = validation + a class-balanced subset of the test part."""
    from rfmml.export.run_inputs import load_inputs
    from rfmml.trainer.data import default_cache_dir, load_part

    inputs = load_inputs(run, "best.pt", None, print)
    cache = None if inputs.config.cache_dir == "" else Path(inputs.config.cache_dir or default_cache_dir())
    test, test_labels = load_part(inputs.split, "test", int(inputs.config.image_size), cache_dir=cache)
    pick = balanced_subset(test_labels.numpy(), test_images, seed=0)
    images = np.concatenate([inputs.val_images, test.numpy()[pick]])
    labels = np.concatenate([inputs.val_labels, test_labels.numpy()[pick].astype(np.int64)])
    return (inputs.train_images, inputs.train_labels), (images, labels)


def measure(name: str, float_bytes: bytes, head, train, evaluation, fp32_emb, args) -> dict:
    settings, n_calib = SETTINGS[name]
    pick = balanced_subset(train[1], n_calib, 1)  # as rfmml-export --int8 picks them
    started = time.perf_counter()
    int8_bytes = quantize_int8(float_bytes, train[0][pick], settings=settings)
    quantize_s = time.perf_counter() - started
    int8_emb = embed_all(ort_embedder(ort_session(int8_bytes, 1)), evaluation[0], 64)
    scorers = head_scorers(head)
    report = compare(fp32_emb, int8_emb, scorers, reference_name="fp32", candidate_name=name)
    tail = slice(len(fp32_emb) - args.test_images, None)  # the test images: never seen by --scan
    test_only = compare(fp32_emb[tail], int8_emb[tail], scorers).agreement if args.test_images else {}
    accuracy = {
        precision: {kind: float(np.mean(np.argmax(f(e), 1) == evaluation[1])) for kind, f in scorers.items()}
        for precision, e in (("fp32", fp32_emb), ("int8", int8_emb))
    }
    speed = {}
    batch = evaluation[0][: args.batch]
    for threads in args.threads:
        engines = {
            "fp32": ort_embedder(ort_session(float_bytes, threads)),
            "int8": ort_embedder(ort_session(int8_bytes, threads)),
        }
        speed[threads] = time_round_robin(engines, batch, args.reps)
    return {
        "setting": name,
        "settings": settings.__dict__,
        "calibration_images": len(pick),
        "eval_images": len(evaluation[1]),
        "agreement": report.agreement,
        "agreement_test_images": test_only,
        "min_cosine": report.min_cosine,
        "max_rel_diff": report.max_rel_diff,
        "accuracy": accuracy,
        "images_per_s": speed,
        "quantize_s": quantize_s,
        "int8_mib": len(int8_bytes) / 2**20,
    }


def scan(name: str, float_bytes: bytes, head, train, evaluation, fp32_emb, n_images: int = 600) -> list:
    """Leave-one-float sensitivity of setting ``name``: for every Conv/Gemm it quantizes, the top-1
    agreement (mean of the heads) and mean cosine on ``n_images`` evaluation images when that node
    alone stays float; rows best first (one calibration, cached)."""
    import tempfile

    import onnx

    from rfmml.export.quantize import float_nodes

    settings, n_calib = SETTINGS[name]
    calibration = train[0][balanced_subset(train[1], n_calib, 1)]
    images, reference, scorers = evaluation[0][:n_images], fp32_emb[:n_images], head_scorers(head)
    kept = {n for names in float_nodes(onnx.load_from_string(float_bytes), settings).values() for n in names}
    candidates = [
        n.name for n in onnx.load_from_string(float_bytes).graph.node if n.op_type in ("Conv", "Gemm")
    ]

    def score(extra: tuple[str, ...]) -> tuple[float, float]:
        variant = dataclasses.replace(settings, float_nodes=settings.float_nodes + extra)
        data = quantize_int8(float_bytes, calibration, settings=variant, calibration_cache=cache)
        emb = embed_all(ort_embedder(ort_session(data, 2)), images, 100)
        report = compare(reference, emb, scorers)
        cosine = np.sum(reference * emb, 1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(emb, axis=1)
        return float(np.mean(list(report.agreement.values()))), float(np.mean(cosine))

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "calibration.json"
        base = score(())
        print(f"{name}: agreement {100 * base[0]:.2f}%, mean cosine {base[1]:.5f}", flush=True)
        rows = []
        for node in (c for c in candidates if c not in kept):
            agreement, cosine = score((node,))
            rows.append({"node": node, "agreement": agreement, "mean_cosine": cosine})
            print(
                f"  {node:20s} float: agreement {100 * agreement:.2f}%, mean cosine {cosine:.5f}", flush=True
            )
    return sorted(rows, key=lambda r: -r["mean_cosine"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="rfmml-train run folder (read only)")
    parser.add_argument("--model", type=Path, required=True, help="its fp32 export (model.onnx + model.npz)")
    parser.add_argument("--settings", default="first_dw,all_dw", help=f"comma-separated of {list(SETTINGS)}")
    parser.add_argument("--scan", default=None, help="per-layer sensitivity of this setting instead")
    parser.add_argument("--test-images", type=int, default=1000, help="test images added to validation")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1])
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    float_bytes, head = args.model.read_bytes(), load_head(args.model.with_suffix(".npz"))
    train, evaluation = load_images(args.run, args.test_images)
    fp32_emb = embed_all(ort_embedder(ort_session(float_bytes, 1)), evaluation[0], 64)
    if args.scan:
        rows = scan(args.scan, float_bytes, head, train, evaluation, fp32_emb)
        if args.json:
            args.json.write_text(json.dumps({"scan": args.scan, "rows": rows}, indent=2))
        return
    results = []
    for name in args.settings.split(","):
        result = measure(name, float_bytes, head, train, evaluation, fp32_emb, args)
        results.append(result)
        agree, speed = result["agreement"], result["images_per_s"]
        rates = " | ".join(
            f"{t} thr: fp32 {s['fp32']:.0f} int8 {s['int8']:.0f} img/s ({s['int8'] / s['fp32']:.2f}x)"
            for t, s in speed.items()
        )
        print(
            f"{name:18s} agreement proto {100 * agree['proto']:.2f}% svm {100 * agree.get('svm', 0):.2f}% "
            f"(test images only {result['agreement_test_images']}) min cos {result['min_cosine']:.4f} | "
            f"int8 acc {result['accuracy']['int8']} | {rates}",
            flush=True,
        )
    if args.json:
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": platform.processor() or platform.machine(),
        }
        args.json.write_text(json.dumps({"meta": meta, "run": str(args.run), "results": results}, indent=2))


if __name__ == "__main__":
    main()
