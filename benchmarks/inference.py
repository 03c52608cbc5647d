"""CPU inference speed: torch eager vs onnxruntime fp32 vs onnxruntime int8 (static QDQ).

Same model, same batches, same thread count; the three engines are timed round-robin, one batch
each in turn, so that load from other processes hits all three alike (report the ratios, which are
measured side by side, rather than the absolute figures). Models are built with random weights
(no ImageNet weights on these machines): speed does not depend on the weights, and the agreement
figures below are those of a random-weight network.

Agreement, on real EuroSAT images when ../shared/data is there (random pixels otherwise):
embeddings of each engine against torch's (max relative difference, min cosine), and top-1
agreement of a prototype head whose prototypes are the class means of torch embeddings of
``--proto-per-class`` images per class, applied to ``--eval-per-class`` other images per class.

    .venv/bin/python benchmarks/inference.py                       # the three default models
    .venv/bin/python benchmarks/inference.py --models resnet18@64 --reps 20 --json out.json
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

from rfmml.export.onnx_export import export_onnx
from rfmml.export.parity import compare, embed_all, ort_embedder, ort_session, torch_embedder
from rfmml.export.quantize import export_fp16, quantize_int8
from rfmml.runtime.imageio import load_tile
from rfmml.trainer.models import build_embedding_net

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "EuroSAT"
DEFAULT_MODELS = ("resnet18@64", "resnet18@224", "wide_resnet50_2@224")


def eurosat_images(size: int, per_class: int, offset: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``per_class`` images of every EuroSAT class (files in sorted order from ``offset``), resized to
    size x size with the runtime's resize -> (uint8 [N, S, S, 3], labels [N]); None without the data."""
    if not DATA.is_dir():
        return None
    images, labels = [], []
    for label, folder in enumerate(sorted(p for p in DATA.iterdir() if p.is_dir())):
        for path in sorted(folder.iterdir())[offset : offset + per_class]:
            images.append(load_tile(path, (size, size)).pixels)
            labels.append(label)
    return np.stack(images), np.array(labels)


def time_round_robin(engines: dict, batch: np.ndarray, reps: int, warmup: int = 1) -> dict[str, float]:
    """Median images/s of each engine on ``batch``, the engines timed in turn, ``reps`` times each."""
    for run in engines.values():
        for _ in range(warmup):
            run(batch)
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(reps):
        for name, run in engines.items():
            start = time.perf_counter()
            run(batch)
            seconds[name].append(time.perf_counter() - start)
    return {name: len(batch) / statistics.median(values) for name, values in seconds.items()}


def bench_model(spec: str, batch_size: int, reps: int, threads: int, args) -> dict:
    backbone, size = spec.split("@")
    size = int(size)
    torch.manual_seed(0)
    model = build_embedding_net(backbone, pretrained=False).eval()
    started = time.perf_counter()
    float_bytes = export_onnx(model, (size, size))
    export_s = time.perf_counter() - started
    calib = eurosat_images(size, args.calib_per_class, 0)
    rng = np.random.default_rng(0)
    calib_images = (
        calib[0] if calib else rng.integers(0, 256, (10 * args.calib_per_class, size, size, 3), np.uint8)
    )
    started = time.perf_counter()
    int8_bytes = quantize_int8(float_bytes, calib_images, batch_size=8)
    quant_s = time.perf_counter() - started
    engines = {
        "torch": torch_embedder(model),
        "ort_fp32": ort_embedder(ort_session(float_bytes, threads)),
        "ort_int8": ort_embedder(ort_session(int8_bytes, threads)),
    }
    batch = rng.integers(0, 256, (batch_size, size, size, 3), np.uint8)
    if args.fp16:
        engines["ort_fp16"] = ort_embedder(ort_session(export_fp16(model, (size, size), 18), threads))
    speed = time_round_robin(engines, batch, reps)

    scale = 3 if "wide" in backbone else 1  # wide_resnet50_2 @224 runs ~9 img/s in torch: fewer images
    n_proto, n_eval = args.proto_per_class // scale, args.eval_per_class // scale
    proto = eurosat_images(size, n_proto, args.calib_per_class)
    evaluation = eurosat_images(size, n_eval, args.calib_per_class + n_proto)
    if proto is None or evaluation is None:
        proto = (rng.integers(0, 256, (40, size, size, 3), np.uint8), np.repeat(np.arange(4), 10))
        evaluation = (rng.integers(0, 256, (40, size, size, 3), np.uint8), np.repeat(np.arange(4), 10))
    emb = {name: embed_all(run, evaluation[0], 16) for name, run in engines.items()}
    proto_emb = embed_all(engines["torch"], proto[0], 16)
    n_classes = int(proto[1].max()) + 1
    prototypes = np.stack([proto_emb[proto[1] == c].mean(0) for c in range(n_classes)])

    def scores(e: np.ndarray) -> np.ndarray:
        return -np.linalg.norm(e[:, None, :] - prototypes[None], axis=2)

    agreement = {}
    for name in [name for name in engines if name != "torch"]:
        report = compare(emb["torch"], emb[name], {"proto": scores}, candidate_name=name)
        agreement[name] = {
            "max_rel_diff": report.max_rel_diff,
            "min_cosine": report.min_cosine,
            "top1_agreement": report.agreement["proto"],
        }
    accuracy = {name: float(np.mean(np.argmax(scores(e), 1) == evaluation[1])) for name, e in emb.items()}
    return {
        "model": spec,
        "batch": batch_size,
        "reps": reps,
        "images_per_s": speed,
        "ratio_vs_torch": {name: value / speed["torch"] for name, value in speed.items()},
        "agreement_vs_torch": agreement,
        "proto_accuracy_random_weights": accuracy,
        "n_eval_images": len(evaluation[1]),
        "export_s": export_s,
        "quantize_s": quant_s,
        "onnx_mb": len(float_bytes) / 2**20,
        "int8_mb": len(int8_bytes) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="backbone@size, comma-separated")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=0, help="timed batches per engine (0: by model size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calib-per-class", type=int, default=10)
    parser.add_argument("--proto-per-class", type=int, default=20)
    parser.add_argument("--eval-per-class", type=int, default=30)
    parser.add_argument("--fp16", action="store_true", help="also time an fp16 model on onnxruntime CPU")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for spec in args.models.split(","):
        reps = args.reps or (3 if "wide" in spec else 6 if "224" in spec else 20)
        result = bench_model(spec, args.batch, reps, args.threads, args)
        results.append(result)
        speed, ratio, agree = result["images_per_s"], result["ratio_vs_torch"], result["agreement_vs_torch"]
        print(
            f"{spec:22s} batch {args.batch}: torch {speed['torch']:7.1f} img/s | ORT fp32 "
            f"{speed['ort_fp32']:7.1f} ({ratio['ort_fp32']:.2f}x) | int8 {speed['ort_int8']:7.1f} "
            f"({ratio['ort_int8']:.2f}x) | top-1 agreement fp32 "
            f"{100 * agree['ort_fp32']['top1_agreement']:.1f}% "
            f"int8 {100 * agree['ort_int8']['top1_agreement']:.1f}% | int8 min cos "
            f"{agree['ort_int8']['min_cosine']:.4f}"
            + (f" | fp16 {speed['ort_fp16']:7.1f} ({ratio['ort_fp16']:.2f}x)" if args.fp16 else ""),
            flush=True,
        )
    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "data": str(DATA) if DATA.is_dir() else "random pixels (no ../shared/data)",
        "torch": torch.__version__,
    }
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
