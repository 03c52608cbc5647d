"""Backbone speed on CPU: frozen feature extraction, then torch eager vs onnxruntime fp32 / int8.

1. Feature extraction (what a frozen backbone costs once per image): torch eager, inference mode,
   ``--batch`` real EuroSAT images per forward, median images/s per backbone and size.
2. Engines, side by side (timed round-robin, one batch each in turn, so that load from other
   processes hits all alike): torch eager, onnxruntime fp32, onnxruntime int8 (static QDQ,
   calibrated on EuroSAT), with the top-1 agreement against torch of a nearest-prototype head on
   real images. With ImageNet weights (efficientnet_lite0) the agreement is that of real features.

    .venv/bin/python benchmarks/backbones.py                                  # lite0 @64/128, engines @128
    .venv/bin/python benchmarks/backbones.py --extract efficientnet_lite0@224,resnet18@128 --engines none
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from inference import DATA, eurosat_images, time_round_robin  # benchmarks/inference.py

from rfmml.export.onnx_export import export_onnx
from rfmml.export.parity import compare, embed_all, ort_embedder, ort_session, torch_embedder
from rfmml.export.quantize import quantize_int8
from rfmml.runtime.heads import pairwise_distance
from rfmml.trainer.models import build_embedding_net


def build(spec: str) -> tuple[torch.nn.Module, int]:
    """``backbone@size`` -> (eval-mode EmbeddingNet with ImageNet weights where offline, size)."""
    backbone, size = spec.split("@")
    pretrained = backbone == "efficientnet_lite0"  # the only offline ImageNet weights
    torch.manual_seed(0)
    return build_embedding_net(backbone, pretrained=pretrained).eval(), int(size)


def extraction_speed(spec: str, batch: int, reps: int) -> dict:
    """Median images/s of frozen feature extraction (torch eager, inference mode)."""
    model, size = build(spec)
    images = eurosat_images(size, max(1, batch // 10), 0)
    pixels = torch.from_numpy(images[0] if images else np.zeros((batch, size, size, 3), np.uint8))
    seconds = []
    with torch.inference_mode():
        model(pixels)  # warm-up
        for _ in range(reps):
            start = time.perf_counter()
            model(pixels)
            seconds.append(time.perf_counter() - start)
    return {"model": spec, "batch": len(pixels), "images_per_s": len(pixels) / statistics.median(seconds)}


def engine_speed(spec: str, batch: int, reps: int, threads: int) -> dict:
    """torch vs onnxruntime fp32 vs int8 images/s, and their nearest-prototype top-1 agreement."""
    model, size = build(spec)
    float_bytes = export_onnx(model, (size, size))
    calibration, support, query = (
        eurosat_images(size, n, offset) for n, offset in ((10, 0), (10, 10), (30, 300))
    )
    int8_bytes = quantize_int8(float_bytes, calibration[0], batch_size=8)
    engines = {
        "torch": torch_embedder(model),
        "ort_fp32": ort_embedder(ort_session(float_bytes, threads)),
        "ort_int8": ort_embedder(ort_session(int8_bytes, threads)),
    }
    speed = time_round_robin(engines, query[0][:batch], reps)
    support_emb = embed_all(engines["torch"], support[0], 50)
    prototypes = np.stack([support_emb[support[1] == c].mean(0) for c in range(int(support[1].max()) + 1)])

    def scores(embeddings: np.ndarray) -> np.ndarray:
        return -pairwise_distance(embeddings, prototypes, "euclidean")

    emb = {name: embed_all(run, query[0], 50) for name, run in engines.items()}
    result = {"model": spec, "batch": batch, "images_per_s": speed, "onnx_mb": len(float_bytes) / 2**20}
    for name in ("ort_fp32", "ort_int8"):
        report = compare(emb["torch"], emb[name], {"proto": scores}, candidate_name=name)
        result[name] = {"max_rel_diff": report.max_rel_diff, "top1_agreement": report.agreement["proto"]}
    result["proto_accuracy"] = {n: float(np.mean(scores(e).argmax(1) == query[1])) for n, e in emb.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--extract", default="efficientnet_lite0@64,efficientnet_lite0@128")
    parser.add_argument("--engines", default="efficientnet_lite0@128", help="backbone@size list, or none")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"EuroSAT not found at {DATA}")
    torch.set_num_threads(args.threads)
    results = {"extract": [], "engines": []}
    for spec in filter(None, args.extract.split(",")):
        row = extraction_speed(spec, args.batch, args.reps)
        results["extract"].append(row)
        print(f"extract {spec:24s} batch {row['batch']}: {row['images_per_s']:7.1f} img/s", flush=True)
    for spec in [s for s in args.engines.split(",") if s and s != "none"]:
        row = engine_speed(spec, args.batch, args.reps, args.threads)
        results["engines"].append(row)
        speed, acc = row["images_per_s"], row["proto_accuracy"]
        agree = {name: 100 * row[name]["top1_agreement"] for name in ("ort_fp32", "ort_int8")}
        print(
            f"engines {spec:24s} torch {speed['torch']:.1f} | ORT fp32 {speed['ort_fp32']:.1f} "
            f"({speed['ort_fp32'] / speed['torch']:.2f}x) | int8 {speed['ort_int8']:.1f} "
            f"({speed['ort_int8'] / speed['torch']:.2f}x) img/s | top-1 agreement fp32 "
            f"{agree['ort_fp32']:.1f} % int8 {agree['ort_int8']:.1f} % "
            f"| proto accuracy torch {100 * acc['torch']:.1f} % int8 {100 * acc['ort_int8']:.1f} %",
            flush=True,
        )
    meta = {
        "machine": platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, **results}, indent=2))


if __name__ == "__main__":
    main()
