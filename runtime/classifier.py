"""``Classifier``: the exported pair (model.onnx + model.npz) behind a numpy-in, numpy-out API.

from rfmml.runtime import Classifier
clf = Classifier.load("model.onnx")             # finds model.npz, checks the digest binding
labels, scores = clf.predict(batch_uint8_nhwc)   # [B] int64 class indices, [B] float32 scores
result = clf.classify_scene("scene.tif", tile=64)
folder = clf.classify_folder("tiles/")
clf2 = clf.enroll("Greenhouses", "tiles/greenhouses/")   # a new class from a handful of tiles
save_head("model-v2.npz", clf2.head)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rfmml.runtime.artifact import (
    INPUT_NAME,
    OUTPUT_NAME,
    ArtifactError,
    Head,
    check_binding,
    default_head_path,
    load_head,
)
from rfmml.runtime.heads import HeadScorer
from rfmml.runtime.imageio import resize_rgb
from rfmml.runtime.session import check_signature, create_session

if TYPE_CHECKING:
    from rfmml.runtime.enroll_tiles import ImageSource
    from rfmml.runtime.folder import FolderResult
    from rfmml.runtime.scene import SceneResult


class Classifier:
    """An embedding session plus a head. Build with :meth:`load`."""

    max_batch = 256  # images per session.run call in embed(); larger arrays are split

    def __init__(self, session, head: Head, kind: str = "proto", model_path: str | Path = "") -> None:
        self.session = session
        self.head = head
        self.scorer = HeadScorer(head, kind)
        self.model_path = Path(model_path)
        height, width = check_signature(session, model_path)
        if (height, width) != (None, None) and (height, width) != tuple(head.input_size):
            raise ArtifactError(
                f"{model_path}: model input is {height}x{width} but the head says {head.input_size}"
            )

    @classmethod
    def load(
        cls,
        model_path: str | Path,
        head_path: str | Path | None = None,
        *,
        head: str = "proto",
        providers: str = "auto",
        threads: int = 0,
    ) -> Classifier:
        """Load ``model_path`` and its head (default: same path with ``.npz``), refusing a mismatched pair.

        ``head``: "proto" or "svm"; ``providers``: "auto", "cpu", "cuda" or a comma list of onnxruntime
        provider names; ``threads``: intra-op threads (0 = onnxruntime's default, one per core).
        Raises ArtifactError (one-line message) for a missing, corrupt or mismatched file.
        """
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ArtifactError(f"model file not found: {model_path}")
        head_path = Path(head_path) if head_path is not None else default_head_path(model_path)
        loaded = load_head(head_path)
        check_binding(model_path, loaded, head_path)
        session = create_session(model_path, providers=providers, threads=threads)
        return cls(session, loaded, head, model_path)

    # -- properties ---------------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.head.class_names

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the model's input; tiles are resized to it."""
        return self.head.input_size

    @property
    def head_kind(self) -> str:
        return self.scorer.kind

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers actually in use, first = preferred."""
        return list(self.session.get_providers())

    # -- inference ----------------------------------------------------------------------------------
    def _prepare(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 [batch, H, W, 3] (RGB), got {images.dtype} {images.shape}")
        height, width = self.input_size
        if images.shape[1:3] != (height, width):
            images = np.stack([resize_rgb(image, (height, width)) for image in images])
        return np.ascontiguousarray(images)

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Embeddings float32 [B, D] of uint8 RGB [B, H, W, 3] (resized to the input size if needed).

        Runs the session on chunks of at most ``max_batch`` images, so a large array does not become
        one huge activation allocation.
        """
        batch = self._prepare(images)
        if batch.shape[0] == 0:
            return np.zeros((0, self.head.embedding_dim), np.float32)
        chunks = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: batch[i : i + self.max_batch]})[0]
            for i in range(0, len(batch), self.max_batch)
        ]
        return np.asarray(np.concatenate(chunks) if len(chunks) > 1 else chunks[0], dtype=np.float32)

    def predict_topk(self, images: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Top-k class indices int64 [B, k] and scores float32 [B, k], best first."""
        embeddings = self.embed(images)
        if embeddings.shape[0] == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self.scorer.topk(embeddings, k)

    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class indices int64 [B] and scores float32 [B] (probability for proto, margin for svm)."""
        labels, scores = self.predict_topk(images, 1)
        return labels[:, 0], scores[:, 0]

    def scores(self, images: np.ndarray) -> np.ndarray:
        """All class scores float64 [B, C] (probabilities for proto, decision values for svm)."""
        return self.scorer.scores(self.embed(images))

    # -- whole inputs -------------------------------------------------------------------------------
    def classify_scene(self, path: str | Path, **options: Any) -> SceneResult:
        """Tile a scene and classify every tile: :func:`rfmml.runtime.scene.classify_scene` (its
        keyword ``options``: tile, stride, batch, top_k, bands, zero_collar, progress)."""
        from rfmml.runtime.scene import classify_scene

        return classify_scene(self, path, **options)

    def classify_folder(self, folder: str | Path, **options: Any) -> FolderResult:
        """Classify every image under ``folder``: :func:`rfmml.runtime.folder.classify_folder` (its
        keyword ``options``: batch, top_k, workers, progress)."""
        from rfmml.runtime.folder import classify_folder

        return classify_folder(self, folder, **options)

    # -- enrolment ----------------------------------------------------------------------------------
    def enroll(self, name: str, images: ImageSource, *, replace: bool = False) -> Classifier:
        """A new classifier whose head has class ``name`` added (or recomputed, ``replace=True``) from
        ``images`` (a folder, image files, or uint8 pixels [N, H, W, 3]): its prototype is the mean of
        their embeddings. Proto head; this classifier is unchanged. See :mod:`rfmml.runtime.enroll`;
        write the new head with :func:`rfmml.runtime.artifact.save_head` (``clf.head``)."""
        from rfmml.runtime.enroll import EnrolPlan, enrol

        pair = ((name, images),)
        plan = EnrolPlan(replaces=pair) if replace else EnrolPlan(adds=pair)
        return Classifier(self.session, enrol(self, plan), "proto", self.model_path)

    def remove(self, name: str) -> Classifier:
        """A new classifier whose head no longer has class ``name`` (at least 2 classes remain)."""
        from rfmml.runtime.enroll import EnrolPlan, enrol

        return Classifier(self.session, enrol(self, EnrolPlan(removes=(name,))), "proto", self.model_path)
