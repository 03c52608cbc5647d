"""GPU benchmark for issue 14 (not a test): the training step as rfmml-train runs it on CUDA, and
onnxruntime's CUDA provider against its CPU provider. Run by benchmarks/gpu_check.sh; prints one
markdown table (for BENCHMARKS.md) and writes the figures as JSON with --json.

Training: wide_resnet50_2 (random init: no weights offline) at 224 px, bf16 autocast, channels_last,
Adam, on the paper's AID-sized episode shapes drawn by the real sampler (30 classes: 25 majority of
150 training images, 5 minority of 20, so N_max = 20, 5 queries): RET (K ~ U[2, 25], N ~ U[1, 20),
pooled queries) and ACF (K = 30, balanced queries). Per phase: episodes/s with cudnn.benchmark off
(what rfmml-train uses for episodes) and on (re-tuned per new episode size), and the data path's share
of a step (sample + gather + augment, synced, over the whole step). The projection is 80,000 RET +
2,000 ACF episodes at those rates. Inference: a resnet18 @224 exported with torch.onnx, img/s at
batch 64 on the CPU provider and on the CUDA provider with rfmml's options (HEURISTIC, TF32 off).

    python benchmarks/gpu_bench.py --json gpu.json
    python benchmarks/gpu_bench.py --dry-run      # the plan, no GPU needed
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rfmml.trainer.augment import Augmenter
from rfmml.trainer.episode import episode_loss
from rfmml.trainer.models import build_embedding_net
from rfmml.trainer.sampler import EpisodeSampler, acf_spec, ret_spec

COUNTS = [150] * 25 + [20] * 5  # AID-like: 25 majority classes, 5 minority ones; N_max = 20
N_MAX, QUERIES = 20, 5
PAPER = {"ret": 80_000, "acf": 2_000}


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_rate(
    backbone: str, size: int, phase: str, episodes: int, benchmark: bool, device: str = "cuda"
) -> dict:
    """Episodes/s and the data share of ``episodes`` timed steps (after 3 warm-up ones)."""
    torch.backends.cudnn.benchmark = benchmark
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    model = build_embedding_net(backbone, pretrained=False).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-6)
    labels = torch.repeat_interleave(torch.arange(len(COUNTS)), torch.tensor(COUNTS))
    images = torch.randint(0, 256, (labels.shape[0], size, size, 3), dtype=torch.uint8, device=device)
    sampler = EpisodeSampler(labels, len(COUNTS), 0, device)
    spec = (
        ret_spec(list(range(25)), N_MAX, QUERIES) if phase == "ret" else acf_spec(len(COUNTS), N_MAX, QUERIES)
    )
    augment = Augmenter(size, device)
    data_s = step_s = 0.0
    n_images = 0
    for i in range(3 + episodes):
        _sync()
        t0 = time.perf_counter()
        ep = sampler.sample(spec)
        batch = augment(images[torch.cat([ep.support, ep.query])], sampler.gen)
        _sync()
        t1 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            emb = model(batch)
        loss, _ = episode_loss(emb, ep.k, ep.n, ep.query_labels, "euclidean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync()
        if i >= 3:
            data_s += t1 - t0
            step_s += time.perf_counter() - t0
            n_images += batch.shape[0]
    return {
        "episodes_per_s": episodes / step_s,
        "images_per_episode": n_images / episodes,
        "data_share": data_s / step_s,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0,
    }


def ort_rates(size: int, batch: int, runs: int) -> dict:
    """img/s of a resnet18 ONNX (uint8 NHWC input, as exported models take) on the CPU provider and
    on the CUDA provider (None: not in this onnxruntime, or it did not start)."""
    import numpy as np
    import onnxruntime as ort

    from rfmml.runtime.session import with_options

    net = build_embedding_net("resnet18", pretrained=False).eval()
    x = torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8)  # the shipped contract: uint8 NHWC
    path = Path(tempfile.mkdtemp()) / "r18.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    data = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    out = {}
    for name in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        if name not in ort.get_available_providers():
            out[name] = None
            continue
        session = ort.InferenceSession(str(path), providers=with_options([name, "CPUExecutionProvider"]))
        if session.get_providers()[0] != name:
            out[name] = None
            continue
        session.run(None, {"x": data})
        t = time.perf_counter()
        for _ in range(runs if name != "CPUExecutionProvider" else 2):
            session.run(None, {"x": data})
        out[name] = batch * (runs if name != "CPUExecutionProvider" else 2) / (time.perf_counter() - t)
    return out


def table(results: dict) -> str:
    lines = [f"GPU: {results['gpu']}, torch {results['torch']}", ""]
    lines += ["| measure | value |", "|---|---|"]
    for key, row in results["train"].items():
        size = f"{row['images_per_episode']:.0f} img/episode, peak {row['peak_gib']:.0f} GiB"
        lines.append(f"| {key}: episodes/s ({size}) | {row['episodes_per_s']:.2f} |")
        lines.append(f"| {key}: data path share of a step | {100 * row['data_share']:.1f} % |")
    lines.append(f"| paper budget (80,000 RET + 2,000 ACF), projected | {results['projected_hours']:.2f} h |")
    for name, rate in results["ort"].items():
        shown = "n/a (provider not in this onnxruntime)" if rate is None else f"{rate:.0f} img/s"
        lines.append(f"| onnxruntime {name} resnet18 @224 batch 64 | {shown} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="wide_resnet50_2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--episodes", type=int, default=15, help="timed episodes per phase and setting")
    parser.add_argument(
        "--budget-s", type=float, default=110, help="start no cudnn.benchmark-on setting after this"
    )
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    args = parser.parse_args()
    plan = [(p, b) for b in (False, True) for p in ("ret", "acf")]  # benchmark off first: the projection
    if args.dry_run:
        for phase, bench in plan:
            print(
                f"train {args.backbone} @{args.image_size} {phase} cudnn.benchmark={bench}: {args.episodes}"
            )
        print("onnxruntime resnet18 @224 batch 64: CPU and CUDA providers")
        return 0
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 1
    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "train": {}}
    started = time.perf_counter()
    for phase, bench in plan:
        key = (
            f"{args.backbone} @{args.image_size} {phase.upper()}, cudnn.benchmark {'on' if bench else 'off'}"
        )
        if bench and time.perf_counter() - started > args.budget_s:  # the off ones always run
            print(f"{key}: skipped (--budget-s {args.budget_s:g} spent)", file=sys.stderr, flush=True)
            continue
        results["train"][key] = train_rate(args.backbone, args.image_size, phase, args.episodes, bench)
        print(f"{key}: {results['train'][key]}", file=sys.stderr, flush=True)
    torch.backends.cudnn.benchmark = False
    off = {
        p: results["train"][f"{args.backbone} @{args.image_size} {p.upper()}, cudnn.benchmark off"]
        for p in PAPER
    }
    results["projected_hours"] = sum(PAPER[p] / off[p]["episodes_per_s"] for p in PAPER) / 3600
    results["ort"] = ort_rates(224, 64, 20)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
