"""Post-hoc heads on finished --tune head runs (issue 11): what RF-MML+ candidates that change only the
test-time head would score, without training anything.

For each run folder (best.pt, config.json, split.json; features from the cache the run filled): the
embeddings of train / val / test, then on the test split

- ``proto``: the run's Proto head, plain or calibrated (a check: must equal the run's eval.json);
- ``proto+pc``: prior-corrected Proto scores ``-d(e, p_k) - tau * log pi_k``, tau on validation
  (balanced accuracy, rfmml.trainer.proto_calibration.choose_tau);
- ``cos+pc``: the same on embeddings centred on the training mean and L2-normalised (cosine-like);
- ``dc+cos+pc``: ``cos+pc`` with the minority prototypes calibrated (distribution calibration's mean);
- ``proto+svm+pc``: z-scored Proto and SVM scores summed, then prior-corrected (tau on validation);
- ``cos+svm+pc``: the same with the cosine-like Proto scores.

Writes ``posthoc.json`` next to each run's kept results (``--results``) and prints one line per run.

    python benchmarks/prior_correction.py benchmarks/out/eurosat_lt_head/s5/seed0/rfmml ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from rfmml.runtime.heads import log_prior, proto_logits, proto_space, svm_logits
from rfmml.trainer.data import default_cache_dir, load_part
from rfmml.trainer.feature_space import CachedFeatureModel, feature_parts
from rfmml.trainer.heads import SvmSettings, accuracy_report, embed, fit_prototypes, fit_svm, predict
from rfmml.trainer.posthoc_heads import calibrate_prototypes, ensemble_logits
from rfmml.trainer.proto_calibration import calibrated_head, choose_tau
from rfmml.trainer.run import load_run


def embeddings(run_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], object, object]:
    """{part: embeddings float32 [N, D]}, {part: labels int64 [N]}, the run's config and split."""
    run = load_run(run_dir)
    config = run.config
    if config.tune != "head":
        raise SystemExit(f"{run_dir}: --tune {config.tune}; this script reads --tune head runs only")
    cache = Path(config.cache_dir or default_cache_dir())
    parts = {
        part: load_part(run.split, part, config.image_size, cache, config.workers, Counter())
        for part in ("train", "val", "test")
    }
    device = torch.device("cpu")
    features, _ = feature_parts(run.model, parts, 1, cache, config.batch_size, device, print, False)
    model = CachedFeatureModel(run.model)
    emb = {p: embed(model, x, config.batch_size, device).numpy() for p, (x, _) in features.items()}
    labels = {p: y.numpy() for p, (_, y) in features.items()}
    return emb, labels, config, run.split


def corrected(name: str, val: np.ndarray, test: np.ndarray, labels, log_pi, report) -> dict:
    """Tau on the validation scores ``val``, then the test report of ``test - tau * log pi``."""
    tau, by_tau = choose_tau(val, labels["val"], log_pi)
    pred = (test - tau * log_pi[None, :]).argmax(1)
    return {name: {**report(pred), "tau": tau, "val_balanced_by_tau": {str(t): a for t, a in by_tau.items()}}}


def calibrated(cos: dict, labels: dict, split, distance: str, log_pi: np.ndarray, report) -> dict:
    """``dc+cos+pc``: the cosine-like Proto head with each minority prototype calibrated with its 2
    nearest majority prototypes (distribution calibration's mean), then prior-corrected."""
    n = len(split.classes)
    protos = fit_prototypes(cos["train"].astype(np.float32), labels["train"], n).numpy()
    minority = [split.classes.index(c) for c in split.minority]
    majority = [split.classes.index(c) for c in split.majority]
    train, y = cos["train"], labels["train"]
    covariances = np.stack(
        [np.cov(train[y == c].T) if (y == c).sum() > 1 else np.eye(train.shape[1]) for c in range(n)]
    )
    means, _ = calibrate_prototypes(protos, covariances, minority, majority, k=2)
    logits = {p: proto_logits(cos[p], means, distance) for p in ("val", "test")}
    return corrected("dc+cos+pc", logits["val"], logits["test"], labels, log_pi, report)


def posthoc(run_dir: Path) -> dict:
    emb, labels, config, split = embeddings(run_dir)
    classes, majority = list(split.classes), list(split.majority)
    n = len(classes)
    log_pi = log_prior(np.bincount(labels["train"], minlength=n))

    def report(pred: np.ndarray) -> dict:
        return accuracy_report(pred, labels["test"], classes, majority)

    protos = fit_prototypes(emb["train"], labels["train"], n).numpy()
    logits = {p: proto_logits(emb[p], protos, config.distance) for p in ("val", "test")}
    if config.calibrated_proto:  # the run's own Proto head is the calibrated one (eval.json's)
        head = calibrated_head(
            emb["train"], labels["train"], emb["val"], labels["val"], classes, majority, config
        )
        out = {"proto": report(predict(head, emb["test"], "proto"))}
    else:
        out = {"proto": report(logits["test"].argmax(1))}
    out |= corrected("proto+pc", logits["val"], logits["test"], labels, log_pi, report)
    centre = emb["train"].mean(0)
    cos = {p: proto_space(emb[p], centre) for p in emb}
    cos_protos = fit_prototypes(cos["train"].astype(np.float32), labels["train"], n).numpy()
    cos_logits = {p: proto_logits(cos[p], cos_protos, config.distance) for p in ("val", "test")}
    out |= corrected("cos+pc", cos_logits["val"], cos_logits["test"], labels, log_pi, report)
    out |= calibrated(cos, labels, split, config.distance, log_pi, report)
    svm = SvmSettings.from_config(config, c=float(json_eval(run_dir)["svm_params"]["C"]))
    coef, intercept = fit_svm(emb["train"], labels["train"], n, svm.c, svm.class_weight, svm.l2_normalize)
    svm_scores = {p: svm_logits(emb[p], coef, intercept, svm.l2_normalize) for p in ("val", "test")}
    both = {p: ensemble_logits(logits[p], svm_scores[p]) for p in ("val", "test")}
    out |= corrected("proto+svm+pc", both["val"], both["test"], labels, log_pi, report)
    cos_svm = {p: ensemble_logits(cos_logits[p], svm_scores[p]) for p in ("val", "test")}
    out |= corrected("cos+svm+pc", cos_svm["val"], cos_svm["test"], labels, log_pi, report)
    return out


def json_eval(run_dir: Path) -> dict:
    return json.loads((run_dir / "eval.json").read_text())


def summary(results: Path) -> str:
    """Markdown per shot count: every run's eval.json heads and posthoc.json heads, mean ± sample std
    over the seeds found (overall / minority %), one row per method/head."""
    lines = []
    for shots_dir in sorted(p for p in results.glob("s*") if p.is_dir()):
        cells: dict[str, list[tuple[float, float]]] = {}
        for run in sorted(shots_dir.glob("seed*/*/eval.json")):
            heads = {h: v for h, v in json.loads(run.read_text()).items() if h in ("linear", "proto", "svm")}
            extra = run.parent / "posthoc.json"
            if extra.exists():
                heads |= {h: v for h, v in json.loads(extra.read_text()).items() if h != "proto"}
            for head, value in heads.items():
                cells.setdefault(f"{run.parent.name} / {head}", []).append(
                    (value["overall"], value["minority"])
                )
        lines += [
            f"### {shots_dir.name}",
            "",
            "| method / head | seeds | overall % | minority % |",
            "|---|---|---|---|",
        ]
        for label, values in sorted(cells.items()):
            stats = [np.array([v[i] for v in values]) * 100 for i in (0, 1)]
            text = [f"{a.mean():.1f}" + (f" ± {a.std(ddof=1):.1f}" if len(a) > 1 else "") for a in stats]
            lines.append(f"| {label} | {len(values)} | {text[0]} | {text[1]} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--summary", action="store_true", help="print the table of --results and stop")
    parser.add_argument("--out-root", type=Path, default=Path("benchmarks/out/eurosat_lt_head"))
    parser.add_argument("--results", type=Path, default=Path("results/eurosat_lt_head"))
    args = parser.parse_args()
    if args.summary:
        print(summary(args.results))
        return 0
    for run_dir in args.runs:
        result = posthoc(run_dir)
        check = json_eval(run_dir)["proto"]["overall"]
        if abs(result["proto"]["overall"] - check) > 1e-9:
            raise SystemExit(f"{run_dir}: proto {result['proto']['overall']} != eval.json {check}")
        kept = args.results / run_dir.resolve().relative_to(args.out_root.resolve())
        kept.mkdir(parents=True, exist_ok=True)
        (kept / "posthoc.json").write_text(json.dumps(result, indent=1) + "\n")
        cells = "  ".join(
            f"{h} {100 * r['overall']:.1f}/{100 * r['minority']:.1f}"
            + (f" tau {r['tau']:g}" if "tau" in r else "")
            for h, r in result.items()
        )
        print(f"{run_dir}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
