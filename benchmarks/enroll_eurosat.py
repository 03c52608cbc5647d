"""Issue 12, item 5: enrolling unseen classes with ``rfmml-enroll`` against retraining, on real EuroSAT.

Protocol (everything drawn from fixed seeds and written to OUT/plan.json):

- classes: the 10 EuroSAT folders; UNSEEN = 4 of them drawn with ``default_rng(12)``, KNOWN = the 6
  others. Per class, files in sorted order are permuted with ``default_rng(0)``; the first TEST go to
  the test set (the same images for every row), the next VAL to validation; known classes then take
  TRAIN training images; an unseen class's enrolment pool is the rest, and for seed s the first
  ``shots`` of ``default_rng(1000 + s).permutation(pool)[:10]`` are its tiles (1 within 5 within 10).
- "known6": ``rfmml-train`` on the 6 known classes (the default preset: efficientnet_lite0 with its
  packaged ImageNet weights, 128 px, ``--tune head``; ``--ret-episodes/--acf-episodes`` as given;
  ``--no-augment`` unless ``--augment``: cached features of one view, the cheapest sensible regime),
  exported with ``rfmml-export``. The 4 unseen classes are then enrolled from ``shots`` tiles each
  (``rfmml.runtime.enroll.enrol``, the code behind ``rfmml-enroll``) and the Proto head scores the
  onnxruntime embeddings of all 10 classes' test images. ``--method frozen``: no training at all (the
  pretrained features; an enrolled prototype is then exactly the one retraining would give).
- "retrain": ``rfmml-train`` on all 10 classes with the same known training images and, for the 4
  unseen classes (as minority classes), the same ``shots`` tiles; its eval.json (Proto head, same test
  images) is the reference. ``shots`` = 1 cannot be retrained (every class needs 2 training images).

Accuracies are means of per-class accuracy: "enrolled" over the 4 unseen classes, "known" over the 6.
Restartable: finished runs, exports and result rows (OUT/results.jsonl) are reused; an interrupted
training run resumes. Light on a shared CPU: ``--threads`` (default 1) for torch and onnxruntime,
``nice``.

    .venv/bin/python benchmarks/enroll_eurosat.py --out /tmp/enroll-bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EUROSAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "EuroSAT"
BIN = Path(sys.executable).parent
SIZE = (128, 128)  # the default preset's input size for efficientnet_lite0
# what the runs depend on (--seeds and --shots may grow between restarts)
TRAINING_SETTINGS = ("train", "val", "test", "method", "ret_episodes", "acf_episodes", "val_every", "augment")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=EUROSAT)
    parser.add_argument("--train", type=int, default=100, help="training images per known class")
    parser.add_argument("--val", type=int, default=20, help="validation images per class")
    parser.add_argument("--test", type=int, default=100, help="test images per class")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="rfmml", help="rfmml-train --method (frozen: no training)")
    parser.add_argument("--ret-episodes", type=int, default=5000)
    parser.add_argument("--acf-episodes", type=int, default=500)
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--augment", action="store_true", help="train with flips/rotations (8x the features)")
    parser.add_argument("--no-retrain", action="store_true", help="only the enrolment rows")
    return parser.parse_args()


# -- the plan ------------------------------------------------------------------------------------------
def make_plan(args: argparse.Namespace) -> dict:
    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    unseen = sorted(classes[i] for i in np.random.default_rng(12).choice(len(classes), 4, replace=False))
    known = [c for c in classes if c not in unseen]
    rng = np.random.default_rng(0)
    test, val, train, pools = {}, {}, {}, {}
    for name in classes:
        files = [f"{name}/{p.name}" for p in sorted((args.data / name).iterdir())]
        files = [files[i] for i in rng.permutation(len(files))]
        test[name], val[name] = files[: args.test], files[args.test : args.test + args.val]
        rest = files[args.test + args.val :]
        if name in known:
            train[name] = rest[: args.train]
        else:
            pools[name] = rest
    tiles = {str(seed): enrolment_tiles(pools, unseen, seed) for seed in args.seeds}
    return {
        "data_root": str(args.data),
        "classes": classes,
        "known": known,
        "unseen": unseen,
        "test": test,
        "val": val,
        "train": train,
        "tiles": tiles,
        "settings": {k: v for k, v in vars(args).items() if k in TRAINING_SETTINGS},
    }


def enrolment_tiles(pools: dict[str, list[str]], unseen: list[str], seed: int) -> dict[str, list[str]]:
    """Up to 10 tiles per unseen class for ``seed`` (one generator consumed class after class); the
    first ``shots`` of them are enrolled, so 1 within 5 within 10."""
    rng = np.random.default_rng(1000 + seed)
    return {name: [pools[name][i] for i in rng.permutation(len(pools[name]))[:10]] for name in unseen}


def load_or_save_plan(args: argparse.Namespace) -> dict:
    path = args.out / "plan.json"
    plan = make_plan(args)
    if path.exists():
        saved = json.loads(path.read_text())
        for key in ("classes", "unseen", "test", "train", "settings"):
            if saved[key] != plan[key]:
                sys.exit(f"{path} was made with other settings ({key} differs): use another --out")
        if set(plan["tiles"]) - set(saved["tiles"]):  # more seeds than before: add theirs
            saved["tiles"] = {**plan["tiles"], **saved["tiles"]}
            path.write_text(json.dumps(saved, indent=1) + "\n")
        return saved
    path.write_text(json.dumps(plan, indent=1) + "\n")
    return plan


def write_split(path: Path, plan: dict, classes: list[str], train: dict[str, list[str]], seed: int) -> Path:
    minority = [c for c in classes if c in plan["unseen"]]
    split = {
        "data_root": plan["data_root"],
        "classes": classes,
        "majority": [c for c in classes if c not in minority],
        "minority": minority,
        "seed": seed,
        "train": train,
        "val": {c: plan["val"][c] for c in classes},
        "test": {c: plan["test"][c] for c in classes},
    }
    path.write_text(json.dumps(split, indent=1) + "\n")
    return path


# -- runs ----------------------------------------------------------------------------------------------
def _tool(name: str, *argv: str, threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = ["nice", "-n", "10", str(BIN / name), *argv]
    print("$", " ".join(command[3:]), flush=True)
    subprocess.run(command, check=True, env=env)


def train(run: Path, split: Path, args: argparse.Namespace) -> Path:
    """A finished run folder (trained now, resumed, or found finished)."""
    if (run / "eval.json").exists():
        return run
    common = [
        "--threads",
        str(args.threads),
        "--workers",
        str(args.threads),
        "--cache-dir",
        str(args.out / "cache"),
        "--no-progress",
    ]
    if (run / "last.pt").exists():
        _tool("rfmml-train", "--resume", str(run), *common, threads=args.threads)
        return run
    episodic = [] if args.method == "frozen" else [
        "--ret-episodes", str(args.ret_episodes), "--acf-episodes", str(args.acf_episodes),
        "--val-every", str(args.val_every),
    ]  # fmt: skip
    _tool(
        "rfmml-train",
        "--data",
        str(args.data),
        "--split",
        str(split),
        "--out",
        str(run),
        "--method",
        args.method,
        *episodic,
        "--augment" if args.augment else "--no-augment",
        *common,
        threads=args.threads,
    )
    return run


def export(run: Path, args: argparse.Namespace) -> Path:
    model = run / "model.onnx"
    if not (model.exists() and model.with_suffix(".npz").exists()):
        _tool(
            "rfmml-export",
            "--run",
            str(run),
            str(model),
            "--no-svm",
            "--no-progress",
            "--force",
            threads=args.threads,
        )
    return model


# -- scoring -------------------------------------------------------------------------------------------
def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    return {name: float((predicted[labels == i] == i).mean()) for i, name in enumerate(names)}


def summary(accuracy: dict[str, float], plan: dict) -> dict[str, float]:
    """Means of per-class accuracy: over the unseen classes, the known ones, all."""
    return {
        "enrolled": float(np.mean([accuracy[c] for c in plan["unseen"]])),
        "known": float(np.mean([accuracy[c] for c in plan["known"]])),
        "overall": float(np.mean(list(accuracy.values()))),
    }


def test_embeddings(clf, plan: dict, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """onnxruntime embeddings float32 [N, D] of the test images of all 10 classes and their labels
    (in plan["classes"] order), decoded by the runtime; cached in ``cache``."""
    if cache.exists():
        with np.load(cache) as data:
            return data["embeddings"], data["labels"]
    from rfmml.runtime.imageio import load_tile

    root = Path(plan["data_root"])
    chunks, labels = [], []
    for label, name in enumerate(plan["classes"]):
        pixels = np.stack([load_tile(root / rel, SIZE).pixels for rel in plan["test"][name]])
        chunks.append(clf.embed(pixels))
        labels += [label] * len(pixels)
    embeddings, labels_array = np.concatenate(chunks), np.array(labels)
    np.savez(cache, embeddings=embeddings, labels=labels_array)
    return embeddings, labels_array


def enrol_rows(model: Path, plan: dict, args: argparse.Namespace, done: set) -> list[dict]:
    from rfmml.runtime.classifier import Classifier
    from rfmml.runtime.enroll import EnrolPlan, enrol
    from rfmml.runtime.heads import HeadScorer

    clf = Classifier.load(model, providers="cpu", threads=args.threads)
    embeddings, labels = test_embeddings(clf, plan, args.out / "test_embeddings.npz")
    # the known model's head names the known classes in plan order; remap the labels to its indices
    order = list(clf.class_names) + plan["unseen"]
    head_labels = np.array([order.index(plan["classes"][i]) for i in labels])
    known_rows = np.isin(head_labels, range(len(clf.class_names)))
    before = HeadScorer(clf.head).logits(embeddings[known_rows]).argmax(1)
    known_before = float(
        np.mean(list(per_class_accuracy(before, head_labels[known_rows], list(clf.class_names)).values()))
    )
    rows = []
    root = Path(plan["data_root"])
    for seed in args.seeds:
        for shots in args.shots:
            if ("enrol", shots, seed) in done:
                continue
            adds = tuple(
                (name, [root / rel for rel in plan["tiles"][str(seed)][name][:shots]])
                for name in plan["unseen"]
            )
            start = time.perf_counter()
            head = enrol(clf, EnrolPlan(adds=adds), date="benchmark")
            seconds = time.perf_counter() - start
            assert list(head.class_names) == order
            predicted = HeadScorer(head).logits(embeddings).argmax(1)
            accuracy = per_class_accuracy(predicted, head_labels, order)
            rows.append(
                {
                    "kind": "enrol",
                    "shots": shots,
                    "seed": seed,
                    **summary(accuracy, plan),
                    "known_before": known_before,
                    "enrol_seconds": seconds,
                    "per_class": accuracy,
                }
            )
    return rows


def retrain_row(plan: dict, args: argparse.Namespace, shots: int, seed: int) -> dict:
    classes = plan["classes"]
    tiles = plan["tiles"][str(seed)]
    training = {c: plan["train"][c] if c in plan["train"] else tiles[c][:shots] for c in classes}
    run = args.out / f"retrain-s{shots}-seed{seed}"
    split = write_split(args.out / f"split-retrain-s{shots}-seed{seed}.json", plan, classes, training, seed)
    train(run, split, args)
    accuracy = json.loads((run / "eval.json").read_text())["proto"]["per_class"]
    return {"kind": "retrain", "shots": shots, "seed": seed, **summary(accuracy, plan), "per_class": accuracy}


# -- main ----------------------------------------------------------------------------------------------
def read_results(path: Path) -> list[dict]:
    return (
        [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    )


def append(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            print({k: v for k, v in row.items() if k != "per_class"}, flush=True)


def mean_std(values: list[float]) -> str:
    """ "mean ± sample std (n=...)" in percent, or n/a."""
    if not values:
        return "n/a"
    std = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):.1f} ± {100 * std:.1f} (n={len(values)})"


def report(rows: list[dict]) -> str:
    """Markdown table: per shots, enrolled- and known-class accuracy of enrolment and retraining."""
    lines = [
        "| shots | enrolled: enrol | enrolled: retrain | known: before | known: enrol | known: retrain |",
        "|---|---|---|---|---|---|",
    ]
    for shots in sorted({r["shots"] for r in rows}):
        cells = [
            mean_std([r[key] for r in rows if r["kind"] == kind and r["shots"] == shots])
            for kind, key in (("enrol", "enrolled"), ("retrain", "enrolled"), ("enrol", "known_before"),
                              ("enrol", "known"), ("retrain", "known"))
        ]  # fmt: skip
        lines.append(f"| {shots} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    plan = load_or_save_plan(args)
    results = args.out / "results.jsonl"
    done = {(r["kind"], r["shots"], r["seed"]) for r in read_results(results)}
    known_split = write_split(args.out / "split-known6.json", plan, plan["known"], plan["train"], 0)
    model = export(train(args.out / "known6", known_split, args), args)
    append(results, enrol_rows(model, plan, args, done))
    if not args.no_retrain:
        for seed in args.seeds:
            for shots in args.shots:
                if shots >= 2 and ("retrain", shots, seed) not in done:
                    append(results, [retrain_row(plan, args, shots, seed)])
    table = report(read_results(results))
    (args.out / "summary.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
