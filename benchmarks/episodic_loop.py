"""Benchmark: rfmml-train's episodic loop against a straightforward one (not a test).

Ours: the decoded training set is one uint8 tensor on the device; each episode is sampled with torch
ops there (EpisodeSampler), gathered, augmented on the device (one gather for flips/rotations) and
embedded in one forward pass.
Straightforward: a batch sampler yielding each episode's indices (Python ``random``), a DataLoader
whose dataset decodes every image from disk (rfmml.runtime.imageio.load_tile) and augments it in
numpy, a per-episode collate into a uint8 tensor, and a host-to-device copy.

Both use the same model, optimiser, loss and episode size (K-way N-shot, Q queries per class). The
script reports episodes/s and images/s of the training loop, the episode-assembly time alone (no
model), and for our loop the share of the step spent on data (assembly) vs compute.

    python benchmarks/episodic_loop.py --data ../shared/data/EuroSAT --backbone conv4 --image-size 64
    python benchmarks/episodic_loop.py --backbone wide_resnet50_2 --image-size 224 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rfmml.runtime.imageio import load_tile
from rfmml.trainer.augment import Augmenter
from rfmml.trainer.data import decode_paths
from rfmml.trainer.episode import episode_loss
from rfmml.trainer.models import build_embedding_net
from rfmml.trainer.sampler import EpisodeSampler, EpisodeSpec
from rfmml.trainer.split import scan_folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class EpisodeBatchSampler:
    """Yields one episode's dataset indices: K classes, N + Q images each (support first)."""

    def __init__(self, labels: list[int], k: int, n: int, q: int, episodes: int, seed: int):
        self.by_class: dict[int, list[int]] = {}
        for i, label in enumerate(labels):
            self.by_class.setdefault(label, []).append(i)
        self.k, self.n, self.q, self.episodes = k, n, q, episodes
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self):
        for _ in range(self.episodes):
            classes = self.rng.sample(sorted(self.by_class), self.k)
            picks = [self.rng.sample(self.by_class[c], self.n + self.q) for c in classes]
            support = [i for p in picks for i in p[: self.n]]
            query = [i for p in picks for i in p[self.n :]]
            yield support + query


class FileDataset(Dataset):
    """Decodes (and augments with numpy flips/rotations) one image per item from disk."""

    def __init__(self, paths: list[str], labels: list[int], size: int, seed: int):
        self.paths, self.labels, self.size, self.seed = paths, labels, size, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        pixels = load_tile(self.paths[i], (self.size, self.size)).pixels
        rng = np.random.default_rng()
        pixels = np.rot90(pixels, int(rng.integers(4)))
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        return np.ascontiguousarray(pixels), self.labels[i]


def collate(items):
    return torch.from_numpy(np.stack([p for p, _ in items])), torch.tensor([label for _, label in items])


def make_data(args) -> tuple[list[str], list[int]]:
    if args.data:
        files = scan_folder(args.data)
    else:  # write the synthetic set as PNG files, so the baseline has something to decode
        from PIL import Image

        from rfmml.trainer.synthetic import make_synthetic_dataset

        images, labels, names = make_synthetic_dataset(0, args.image_size)
        root = Path(tempfile.mkdtemp(prefix="rfmml-bench-"))
        files = {}
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            (root / names[label]).mkdir(exist_ok=True)
            Image.fromarray(image).save(root / names[label] / f"{i:05d}.png")
            files.setdefault(names[label], []).append(f"{names[label]}/{i:05d}.png")
        args.data = str(root)
    classes = sorted(files)
    paths, labels = [], []
    for label, name in enumerate(classes):
        chosen = files[name][: args.per_class]
        paths += [str(Path(args.data) / p) for p in chosen]
        labels += [label] * len(chosen)
    return paths, labels


def step(model, optimizer, batch, k, n, query_labels, device):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        emb = model(batch)
    loss, _ = episode_loss(emb, k, n, query_labels, "euclidean")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss


def build(args, device):
    torch.manual_seed(0)
    model = build_embedding_net(args.backbone, pretrained=False).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def bench_ours(args, paths, labels, device, train: bool) -> dict:
    t0 = time.perf_counter()
    decoded, _ = decode_paths(paths, args.image_size)
    decode_s = time.perf_counter() - t0
    images = torch.from_numpy(decoded).to(device)
    label_t = torch.tensor(labels)
    n_classes = int(label_t.max()) + 1
    sampler = EpisodeSampler(label_t, n_classes, 0, device)
    spec = EpisodeSpec(tuple(range(n_classes)), args.k, args.k, args.n, args.n, args.q, "balanced")
    augment = Augmenter(args.image_size, device)
    model, optimizer = build(args, device) if train else (None, None)
    data_s = compute_s = 0.0
    total = args.warmup + args.episodes
    for i in range(total):
        if i == args.warmup:
            _sync(device)
            start, data_s, compute_s = time.perf_counter(), 0.0, 0.0
        t = time.perf_counter()
        ep = sampler.sample(spec)
        batch = augment(images[torch.cat([ep.support, ep.query])], sampler.gen)
        if args.split_timing or not train:
            _sync(device)
        t2 = time.perf_counter()
        data_s += t2 - t
        if train:
            step(model, optimizer, batch, ep.k, ep.n, ep.query_labels, device)
            if args.split_timing:
                _sync(device)
            compute_s += time.perf_counter() - t2
    _sync(device)
    wall = time.perf_counter() - start
    return {
        "episodes_per_s": args.episodes / wall,
        "images_per_s": args.episodes * args.k * (args.n + args.q) / wall,
        "data_s": data_s,
        "compute_s": compute_s,
        "wall_s": wall,
        "decode_once_s": decode_s,
    }


def bench_straightforward(args, paths, labels, device, train: bool) -> dict:
    dataset = FileDataset(paths, labels, args.image_size, 0)
    batches = EpisodeBatchSampler(labels, args.k, args.n, args.q, args.warmup + args.episodes, 0)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=args.loader_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    model, optimizer = build(args, device) if train else (None, None)
    query_labels = torch.arange(args.k, device=device).repeat_interleave(args.q)
    data_s = compute_s = 0.0
    t = time.perf_counter()
    for i, (batch, _) in enumerate(loader):
        if i == args.warmup:
            _sync(device)
            start, data_s, compute_s = time.perf_counter(), 0.0, 0.0
            t = start
        batch = batch.to(device, non_blocking=True)
        if args.split_timing or not train:
            _sync(device)
        t2 = time.perf_counter()
        data_s += t2 - t
        if train:
            step(model, optimizer, batch, args.k, args.n, query_labels, device)
            if args.split_timing:
                _sync(device)
            compute_s += time.perf_counter() - t2
        t = time.perf_counter()
    _sync(device)
    wall = time.perf_counter() - start
    return {
        "episodes_per_s": args.episodes / wall,
        "images_per_s": args.episodes * args.k * (args.n + args.q) / wall,
        "data_s": data_s,
        "compute_s": compute_s,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="ImageFolder root (default: the synthetic set written as PNG files)")
    parser.add_argument("--backbone", default="conv4")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=300, help="images per class to use")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--q", type=int, default=15, help="queries per class")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--assembly-episodes", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--split-timing",
        action="store_true",
        help="sync after the data part of each step to split data vs compute time",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    paths, labels = make_data(args)
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"{torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}",
        "torch": torch.__version__,
        "args": vars(args),
    }
    train_episodes = args.episodes
    # rounds alternate between the two loops so that a shared machine's load hits both alike;
    # the reported figure is the median round
    rounds: dict[str, list[dict]] = {
        k: [] for k in ("assembly_ours", "assembly_straightforward", "train_ours", "train_straightforward")
    }
    for _ in range(args.rounds):
        args.episodes = args.assembly_episodes
        rounds["assembly_ours"].append(bench_ours(args, paths, labels, device, train=False))
        rounds["assembly_straightforward"].append(
            bench_straightforward(args, paths, labels, device, train=False)
        )
        args.episodes = train_episodes
        rounds["train_ours"].append(bench_ours(args, paths, labels, device, train=True))
        rounds["train_straightforward"].append(bench_straightforward(args, paths, labels, device, train=True))
    for key, values in rounds.items():
        results[key] = sorted(values, key=lambda r: r["episodes_per_s"])[len(values) // 2]
        results[key]["rounds_episodes_per_s"] = [round(r["episodes_per_s"], 3) for r in values]
    results["load_average"] = os.getloadavg()
    a_o, a_s = results["assembly_ours"], results["assembly_straightforward"]
    t_o, t_s = results["train_ours"], results["train_straightforward"]
    print(json.dumps(results, indent=1))
    print(
        f"\nepisode: {args.k}-way {args.n}-shot {args.q} queries/class = "
        f"{args.k * (args.n + args.q)} images, "
        f"{args.backbone} @ {args.image_size} px on {device}"
    )
    print("| loop | assembly only, episodes/s | training, episodes/s | training, images/s |")
    print("|---|---|---|---|")
    print(
        f"| rfmml (device tensor) | {a_o['episodes_per_s']:.0f} | {t_o['episodes_per_s']:.2f} | "
        f"{t_o['images_per_s']:.0f} |"
    )
    print(
        f"| straightforward (DataLoader) | {a_s['episodes_per_s']:.0f} | {t_s['episodes_per_s']:.2f} | "
        f"{t_s['images_per_s']:.0f} |"
    )
    print(
        f"| ratio | {a_o['episodes_per_s'] / a_s['episodes_per_s']:.1f}x | "
        f"{t_o['episodes_per_s'] / t_s['episodes_per_s']:.2f}x | |"
    )
    if args.split_timing:
        share = t_o["data_s"] / max(t_o["data_s"] + t_o["compute_s"], 1e-9)
        print(
            f"rfmml loop: data {t_o['data_s']:.3f} s, compute {t_o['compute_s']:.3f} s: "
            f"data share {100 * share:.1f}%"
        )
    print(f"one-off decode of {len(paths)} images into the tensor: {a_o['decode_once_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
