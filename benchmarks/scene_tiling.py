"""Scene tiling benchmark (issue 4): end-to-end ``rfmml-infer`` on a large GeoTIFF vs the model alone.

    .venv/bin/python benchmarks/scene_tiling.py --size 10000            # builds model + scene
    .venv/bin/python benchmarks/scene_tiling.py --model model.onnx      # an exported pair instead

1. Model: ``--model`` (an exported pair: model.onnx + model.npz), or a ResNet-18 (random init, torch)
   at 64 px wrapped with the contract's pre-processing, exported to ONNX with a random head.
2. Scene: ``--size`` x ``--size`` px of real EuroSAT images (../shared/data) laid on a 64-px grid,
   written as a tiled (256 x 256), DEFLATE-compressed GeoTIFF in EPSG:32632 (never whole in memory).
3. Ceiling: the onnxruntime session alone on pre-decoded uint8 batches of ``--batch`` tiles.
4. End-to-end: ``rfmml-infer --model M SCENE --out classmap.tif`` in a subprocess: its tiles/s
   (classification phase: read + infer + head), the command's wall time, and its peak RSS (VmHWM).

Results go to stdout and ``--out/scene_tiling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EUROSAT = ROOT.parent / "shared" / "data" / "EuroSAT"
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_model(folder: Path, size: int, seed: int = 0) -> Path:
    """ResNet-18 (random init) embedding net, uint8 NHWC in, 512-d out; pair written to folder."""
    import torch
    import torchvision

    from rfmml.runtime.artifact import Head, save_head, sha256_file

    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            backbone = torchvision.models.resnet18(weights=None)
            backbone.fc = torch.nn.Identity()
            self.backbone = backbone.eval()
            self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255.0)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.permute(0, 3, 1, 2).float()
            return self.backbone((x - self.mean) / self.std)

    net = Net().eval()
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    model_path = folder / "model.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        net,
        (example,),
        str(model_path),
        input_names=["images"],
        output_names=["embeddings"],
        dynamo=True,
        external_data=False,
        dynamic_shapes={"images": {0: batch}},
    )
    names = tuple(sorted(p.name for p in EUROSAT.iterdir() if p.is_dir())) if EUROSAT.is_dir() else tuple(
        f"class_{i}" for i in range(10)
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    head = Head(
        class_names=names,
        input_size=(size, size),
        distance="euclidean",
        prototypes=rng.normal(size=(len(names), 512)).astype(np.float32),
        majority=np.ones(len(names), bool),
        train_counts=np.full(len(names), 100, np.int64),
        onnx_sha256=sha256_file(model_path),
        metadata={"note": "benchmark: resnet18 random init"},
    )
    save_head(model_path.with_suffix(".npz"), head)
    return model_path


def build_scene(path: Path, side: int, tile: int = 64, n_sources: int = 2000, seed: int = 0) -> Path:
    """side x side px of real EuroSAT tiles (tile-aligned grid), written 256 rows at a time."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from rfmml.runtime.imageio import load_tile

    files = sorted(EUROSAT.rglob("*.jpg"))
    if not files:
        raise SystemExit(f"no EuroSAT images under {EUROSAT}: pass --scene")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), min(n_sources, len(files)), replace=False)
    sources = np.stack([load_tile(files[i], (tile, tile)).pixels for i in chosen])  # [n, 64, 64, 3]
    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8", crs="EPSG:32632")
    profile.update(transform=from_origin(399960.0, 5900040.0, 10.0, 10.0), tiled=True)
    profile.update(blockxsize=256, blockysize=256, compress="deflate", photometric="RGB")
    per_row = -(-side // tile)
    with rasterio.open(path, "w", **profile) as dst:
        for y0 in range(0, side, 256):
            rows = min(256, side - y0)
            strip = np.empty((rows, per_row * tile, 3), np.uint8)
            for r in range(0, rows, tile):
                picks = sources[rng.integers(0, len(sources), per_row)]
                height = min(tile, rows - r)
                strip[r : r + height] = picks[:, :height].transpose(1, 0, 2, 3).reshape(height, -1, 3)
            dst.write(np.moveaxis(strip[:, :side], -1, 0), window=Window(0, y0, side, rows))
    return path


def ceiling(model: Path, batch: int, threads: int, n_tiles: int, seconds: float = 20.0) -> dict:
    """Tiles/s of the session + head alone on pre-decoded batches (random EuroSAT-like pixels)."""
    from rfmml.runtime import Classifier

    clf = Classifier.load(model, providers="cpu", threads=threads)
    size = clf.input_size
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, 256, (batch, *size, 3), dtype=np.uint8) for _ in range(4)]
    clf.predict(batches[0])  # warm-up
    done, start = 0, time.perf_counter()
    while done < n_tiles and time.perf_counter() - start < seconds:
        clf.predict(batches[(done // batch) % 4])
        done += batch
    elapsed = time.perf_counter() - start
    return {"tiles": done, "seconds": elapsed, "tiles_per_s": done / elapsed}


RUNNER = (
    "import sys\n"
    "from rfmml.runtime.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print(f'PEAK_RSS_KIB {hwm}')\n"
    "sys.exit(rc)\n"
)


def end_to_end(
    model: Path, scene: Path, out: Path, batch: int, threads: int, extra: tuple[str, ...] = ()
) -> dict:
    """``rfmml-infer`` on ``scene`` in a subprocess (``extra``: more options, e.g. --stride) -> its
    classification tiles/s, the command's wall time and its peak RSS."""
    argv = ["--model", str(model), str(scene), "--out", str(out / "classmap.tif"), "--batch", str(batch)]
    argv += ["--providers", "cpu", "--quiet"] + (["--threads", str(threads)] if threads else []) + list(extra)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUNNER, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"rfmml-infer failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    tiles, secs, rate = re.search(r"(\d+) tiles in ([\d.]+) s \(([\d.]+) tiles/s\)", proc.stdout).groups()
    peak = int(re.search(r"PEAK_RSS_KIB (\d+)", proc.stdout).group(1))
    return {"tiles": int(tiles), "seconds": float(secs), "tiles_per_s": float(rate), "command_wall_s": wall,
            "peak_rss_mib": peak / 1024, "stdout": proc.stdout}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10000, help="scene side in px (default 10000)")
    parser.add_argument("--model", type=Path, default=None, help="existing model.onnx (+ .npz)")
    parser.add_argument("--scene", type=Path, default=None, help="existing scene instead of building one")
    parser.add_argument("--tile", type=int, default=64, help="input size of the built model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    parser.add_argument("--stride", type=int, default=0, help="rfmml-infer --stride (0: the tile side)")
    parser.add_argument("--bands", default=None, help="rfmml-infer --bands (e.g. 1,2,3 for a 4-band NAIP)")
    parser.add_argument("--ceiling-seconds", type=float, default=20.0, help="length of each ceiling run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "scene_tiling")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = args.model or build_model(args.out, args.tile)
    print(f"model {model} ({time.perf_counter() - t0:.1f} s)", flush=True)
    t0 = time.perf_counter()
    scene = args.scene or build_scene(args.out / f"scene_{args.size}.tif", args.size)
    print(f"scene {scene} ({scene.stat().st_size / 2**20:.0f} MiB on disk, {time.perf_counter() - t0:.1f} s)")
    load_before = os.getloadavg()[0]
    # the ceiling is measured before and after the end-to-end run (shared machines drift)
    extra = (("--stride", str(args.stride)) if args.stride else ()) + (
        ("--bands", args.bands) if args.bands else ()
    )
    top_before = ceiling(model, args.batch, args.threads, 10**9, args.ceiling_seconds)
    e2e = end_to_end(model, scene, args.out, args.batch, args.threads, extra)
    print(e2e.pop("stdout"))
    top_after = ceiling(model, args.batch, args.threads, 10**9, args.ceiling_seconds)
    top = {
        "before": top_before,
        "after": top_after,
        "tiles_per_s": (top_before["tiles_per_s"] + top_after["tiles_per_s"]) / 2,
    }
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "scene": str(scene),
        "size": args.size,
        "model": str(model),
        "batch": args.batch,
        "threads": args.threads,
        "rfmml_infer_options": list(extra),
        "end_to_end": e2e,
        "ceiling": top,
        "ratio": e2e["tiles_per_s"] / top["tiles_per_s"],
    }
    (args.out / "scene_tiling.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
