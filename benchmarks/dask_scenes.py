"""Scene archives with Dask (issue 13): scenes/s of a LocalCluster with 1 and 2 workers against the
serial loop, and peak RSS per worker.

    .venv/bin/python benchmarks/dask_scenes.py                      # builds model + 8 scenes
    .venv/bin/python benchmarks/dask_scenes.py --model model.onnx   # an exported pair instead

1. Model: ``--model`` (an exported pair) or benchmarks/scene_tiling.py's ResNet-18 at 64 px (random
   init, contract pre-processing, random head): the work per tile is a real CNN's.
2. Scenes: ``--scenes`` (8) mosaics of real EuroSAT images on a 64-px grid, ``--side`` px square,
   tiled DEFLATE GeoTIFFs (scene_tiling.build_scene, a different seed per scene).
3. Runs, each into a fresh output folder, interleaved over ``--repeats`` rounds (the machine is
   shared: compare within a round): the serial loop (``classify_scenes`` without a client, in a
   subprocess, with 1 and with 2 onnxruntime threads), and a LocalCluster (processes, 1 thread per
   worker, onnxruntime threads 1) with 1 and with 2 workers; then a rerun of the last one, where
   every scene is skipped. Cluster start-up is timed apart from the scenes. Peak RSS: VmHWM of each
   worker process (a fresh cluster per run) and of the serial subprocess.

Results go to stdout and ``--out/dask_scenes.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from scene_tiling import build_model, build_scene  # noqa: E402

SERIAL = (
    "import json, sys, time\n"
    "from rfmml.runtime import classify_scenes\n"
    "model, out, threads, *scenes = sys.argv[1:]\n"
    "start = time.perf_counter()\n"
    "s = classify_scenes(scenes, model=model, out_dir=out, providers='cpu', threads=int(threads))\n"
    "wall = time.perf_counter() - start\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "print(json.dumps({'seconds': wall, 'ok': len(s.with_status('ok')), 'peak_rss_mib': int(hwm) / 1024}))\n"
)


def peak_rss_mib() -> float:
    """VmHWM of the calling process (run on each worker through ``client.run``)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def serial(model: Path, scenes: list[Path], out: Path, threads: int) -> dict:
    argv = [sys.executable, "-c", SERIAL, str(model), str(out), str(threads), *map(str, scenes)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["scenes_per_s"] = result["ok"] / result["seconds"]
    return result


def on_cluster(model: Path, scenes: list[Path], out: Path, workers: int) -> dict:
    from distributed import Client, LocalCluster

    from rfmml.runtime import classify_scenes
    from rfmml.runtime.dask_scenes import worker_session_loads

    start = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:  # fmt: skip
        client.wait_for_workers(workers)
        startup = time.perf_counter() - start
        t0 = time.perf_counter()
        summary = classify_scenes(scenes, model=model, out_dir=out, providers="cpu", threads=1, client=client)
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        rerun = classify_scenes(scenes, model=model, out_dir=out, providers="cpu", threads=1, client=client)
        rerun_seconds = time.perf_counter() - t0
        rss = sorted(client.run(peak_rss_mib).values())
        loads = sorted(worker_session_loads(client).values())
    assert len(summary.with_status("ok")) == len(scenes), summary.lines()
    assert len(rerun.with_status("skipped")) == len(scenes), rerun.lines()
    return {"workers": workers, "startup_s": startup, "seconds": seconds, "ok": len(scenes),
            "scenes_per_s": len(scenes) / seconds, "rerun_all_skipped_s": rerun_seconds,
            "worker_peak_rss_mib": rss, "worker_session_loads": loads}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="existing model.onnx (+ .npz)")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--side", type=int, default=2048, help="scene side in px (default 2048: 1024 tiles)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "dask_scenes")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.model or build_model(args.out, 64)
    scenes = [args.out / f"scene{i}.tif" for i in range(args.scenes)]
    for i, scene in enumerate(scenes):
        if not scene.exists():
            build_scene(scene, args.side, seed=i)
    load = [os.getloadavg()[0]]
    runs: dict[str, list[dict]] = {
        "serial_1thread": [],
        "serial_2threads": [],
        "dask_1worker": [],
        "dask_2workers": [],
    }
    for rep in range(args.repeats):
        for name in runs:
            out = args.out / f"maps_{name}_{rep}"
            if out.exists():
                shutil.rmtree(out)
            if name.startswith("serial"):
                result = serial(model, scenes, out, 1 if name == "serial_1thread" else 2)
            else:
                result = on_cluster(model, scenes, out, 1 if name == "dask_1worker" else 2)
            runs[name].append(result)
            print(f"round {rep} {name}: {json.dumps(result)}", flush=True)
            load.append(os.getloadavg()[0])
    base = [r["scenes_per_s"] for r in runs["serial_1thread"]]
    ratios = {name: statistics.median(r["scenes_per_s"] / b for r, b in zip(rs, base, strict=True))
              for name, rs in runs.items()}  # fmt: skip
    summary = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "load_average_1min": load,
        "model": str(model),
        "scenes": args.scenes,
        "side": args.side,
        "tiles_per_scene": (-(-args.side // 64)) ** 2,
        "median_scenes_per_s": {
            name: statistics.median(r["scenes_per_s"] for r in rs) for name, rs in runs.items()
        },
        "ratio_to_serial_1thread_median": ratios,
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    (args.out / "dask_scenes.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
