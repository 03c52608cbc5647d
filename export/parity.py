"""Parity proof: embeddings of a reference (torch, or the float ONNX model) against a candidate.

Compared on the same uint8 images, cut into the same batches (including a batch of 1 and an odd
size): max absolute difference, max relative difference (max |a - b| over max |a|, so that a
near-zero component does not blow the ratio up), the smallest cosine similarity of an image's two
embeddings, and the agreement of the argmax class under each head. ``check`` makes it fatal.
The heads score with the runtime's own scorer (``rfmml.runtime.heads.HeadScorer``), the code that
ships, so an agreement measured here is the agreement inference will see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rfmml.runtime.errors import ExportError

Embedder = Callable[[np.ndarray], np.ndarray]  # uint8 [B, H, W, 3] -> float32 [B, D]
Scorer = Callable[[np.ndarray], np.ndarray]  # float32 [N, D] -> scores [N, C]


class ParityError(ExportError):
    """Parity beyond tolerance; the message is one line for the user."""


@dataclass(frozen=True)
class ParityReport:
    """Result of one comparison; ``agreement`` maps head name -> fraction of equal argmax classes."""

    reference: str
    candidate: str
    n_images: int
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    max_rel_diff: float
    min_cosine: float
    agreement: dict[str, float]
    rel_tolerance: float | None
    min_agreement: float | None
    passed: bool

    def to_dict(self) -> dict:
        data = asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        return data

    def summary(self) -> str:
        """One line for the console and the logs."""
        agree = ", ".join(f"{name} {100 * value:.2f}%" for name, value in self.agreement.items())
        limits = []
        if self.rel_tolerance is not None:
            limits.append(f"rel tol {self.rel_tolerance:g}")
        if self.min_agreement is not None:
            limits.append(f"min agreement {100 * self.min_agreement:.1f}%")
        return (
            f"{self.candidate} vs {self.reference}: {self.n_images} images in batches "
            f"{list(self.batch_sizes)}; max abs diff {self.max_abs_diff:.3g}, max rel diff "
            f"{self.max_rel_diff:.3g}, min cosine {self.min_cosine:.6f}; argmax agreement: "
            f"{agree or 'no heads'} [{'; '.join(limits) or 'report only'}] -> "
            f"{'OK' if self.passed else 'FAILED'}"
        )


def parity_batches(n_images: int, large: int = 32) -> list[int]:
    """Batch sizes covering ``n_images``: 1, 2, 7 first (a single, an even and an odd batch), then
    chunks of ``large`` (the last one is whatever remains)."""
    sizes: list[int] = []
    remaining = n_images
    for size in (1, 2, 7):
        if remaining <= 0:
            break
        sizes.append(min(size, remaining))
        remaining -= sizes[-1]
    while remaining > 0:
        sizes.append(min(large, remaining))
        remaining -= sizes[-1]
    return sizes


def embed_in_batches(
    embed: Embedder, images: np.ndarray, batch_sizes: Sequence[int], progress: str | None = None
) -> np.ndarray:
    """Run ``embed`` over ``images`` [N, H, W, 3] in the given consecutive batches -> float32 [N, D].

    ``progress``: a label for a tqdm bar (None: silent)."""
    if sum(batch_sizes) != len(images):
        raise ValueError(f"batch sizes {list(batch_sizes)} do not add up to {len(images)} images")
    if progress:
        from tqdm import tqdm

        batch_sizes = tqdm(batch_sizes, desc=progress, unit="batch", leave=False)
    out, start = [], 0
    for size in batch_sizes:
        out.append(np.asarray(embed(images[start : start + size]), dtype=np.float32))
        start += size
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    scorers: dict[str, Scorer] | None = None,
    *,
    reference_name: str = "torch",
    candidate_name: str = "onnxruntime",
    batch_sizes: Sequence[int] = (),
    rel_tolerance: float | None = None,
    min_agreement: float | None = None,
) -> ParityReport:
    """Compare two embedding arrays [N, D] of the same images; ``passed`` applies the given limits."""
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        raise ParityError(
            f"{candidate_name} gives embeddings {candidate.shape}, {reference_name} {reference.shape}"
        )
    if not np.all(np.isfinite(candidate)):
        max_abs = max_rel = float("inf")
        min_cos = float("nan")
    else:
        diff = np.abs(reference - candidate)
        max_abs = float(diff.max(initial=0.0))
        max_rel = max_abs / max(float(np.abs(reference).max(initial=0.0)), 1e-12)
        norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
        cos = np.sum(reference * candidate, axis=1) / np.maximum(norms, 1e-12)
        min_cos = float(cos.min(initial=1.0))
    agreement = {}
    for name, scorer in (scorers or {}).items():
        ref_pred = np.argmax(scorer(reference.astype(np.float32)), axis=1)
        cand_pred = np.argmax(scorer(candidate.astype(np.float32)), axis=1)
        agreement[name] = float(np.mean(ref_pred == cand_pred)) if len(ref_pred) else 1.0
    passed = np.isfinite(max_abs)
    if rel_tolerance is not None:
        passed = passed and max_rel <= rel_tolerance
    if min_agreement is not None:
        passed = passed and all(value >= min_agreement for value in agreement.values())
    return ParityReport(
        reference=reference_name,
        candidate=candidate_name,
        n_images=len(reference),
        batch_sizes=tuple(int(b) for b in batch_sizes),
        max_abs_diff=max_abs,
        max_rel_diff=max_rel,
        min_cosine=min_cos,
        agreement=agreement,
        rel_tolerance=rel_tolerance,
        min_agreement=min_agreement,
        passed=bool(passed),
    )


def head_scorers(head) -> dict[str, Scorer]:
    """Head kind -> (embeddings [N, D] -> logits [N, C]) with the runtime's scorer, for every kind
    ``head`` (an ``rfmml.runtime.artifact.Head``) holds: "proto", and "svm" when it has one."""
    from rfmml.runtime.heads import HEAD_KINDS, HeadScorer

    kinds = [kind for kind in HEAD_KINDS if kind != "svm" or head.has_svm]
    return {kind: HeadScorer(head, kind).logits for kind in kinds}


def head_accuracy(head, embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Overall accuracy (fraction in [0, 1]) of every kind of ``head`` on embeddings [N, D] with
    labels int [N], scored as inference scores; {} when there are no images."""
    if len(labels) == 0:
        return {}
    return {
        kind: float(np.mean(np.argmax(scorer(embeddings), axis=1) == labels))
        for kind, scorer in head_scorers(head).items()
    }


def check(report: ParityReport, what: str = "parity check") -> None:
    """Raise ParityError (one line, nothing written) when ``report`` did not pass."""
    if not report.passed:
        raise ParityError(f"{what} failed, nothing written: {report.summary()}")


def torch_embedder(model) -> Embedder:
    """uint8 numpy batch -> float32 numpy embeddings with a torch EmbeddingNet (eval, no grad, CPU)."""
    import torch

    model = model.eval()

    def embed(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()

    return embed


def ort_embedder(session) -> Embedder:
    """uint8 numpy batch -> float32 numpy embeddings with an onnxruntime session of the contract."""

    from rfmml.runtime.artifact import INPUT_NAME, OUTPUT_NAME

    def embed(batch: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.uint8)})[0]

    return embed


def ort_session(model_bytes: bytes, threads: int | None = None):
    """An onnxruntime CPU session on serialised model bytes (full graph optimisation)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def embed_all(embed: Embedder, images, batch_size: int = 64, progress: str | None = None) -> np.ndarray:
    """Embed uint8 images [N, H, W, 3] (numpy or torch) in fixed batches -> float32 [N, D] ([0, 0]
    when N = 0)."""
    images = images.numpy() if hasattr(images, "numpy") else np.asarray(images)
    sizes = [min(batch_size, len(images) - start) for start in range(0, len(images), batch_size)]
    return embed_in_batches(embed, images, sizes, progress)
