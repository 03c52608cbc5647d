"""load_head trusts nothing (issue 9 items 3 and 6): every head file is crafted here, refused with one
line naming the file, and nothing large is allocated or decompressed on the way."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format
from runtime_fixtures import random_head

from rfmml.runtime.artifact import (
    HEAD_KINDS,
    ArtifactError,
    Head,
    head_arrays,
    load_head,
    save_head,
)
from rfmml.runtime.artifact_schema import MAX_CLASSES
from rfmml.runtime.heads import HeadScorer
from rfmml.runtime.safe_npz import read_npz


def _head(n_classes: int = 3, dim: int = 4, svm: bool = True) -> Head:
    return random_head(n_classes, dim, svm, onnx_sha256="ab" * 32, metadata={"svm": {"C": 1.0}})


def _write(path: Path, **changes) -> Path:
    """A head file whose arrays are a valid head's, with ``changes`` (None removes a key)."""
    arrays = {**head_arrays(_head()), **changes}
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return path


def _refused(path: Path, match: str) -> str:
    with pytest.raises(ArtifactError, match=match) as caught:
        load_head(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_a_valid_head_round_trips(tmp_path):
    head = _head()
    save_head(tmp_path / "h.npz", head)
    loaded = load_head(tmp_path / "h.npz")
    assert loaded.class_names == head.class_names and loaded.kinds == HEAD_KINDS
    np.testing.assert_array_equal(loaded.prototypes, head.prototypes)
    np.testing.assert_array_equal(loaded.svm_coef, head.svm_coef)
    assert loaded.metadata == head.metadata and loaded.onnx_sha256 == head.onnx_sha256
    assert load_head(_write(tmp_path / "no_svm.npz", svm_coef=None, svm_intercept=None,
                            svm_l2_normalize=None)).kinds == ("proto",)  # fmt: skip


def test_svm_intercept_minus_inf_is_a_class_that_never_wins(tmp_path):
    path = _write(tmp_path / "h.npz", svm_intercept=np.array([0.0, -np.inf, 0.5], np.float32))
    head = load_head(path)
    labels, _ = HeadScorer(head, "svm").topk(np.random.default_rng(1).normal(size=(20, 4)))
    assert 1 not in labels


def test_unknown_key_is_refused_without_decompressing_it(tmp_path):
    """A bomb under an unused key: its compressed bytes are garbage, so reading it at all would fail
    with a zlib error; the directory alone must refuse it."""
    path = _write(tmp_path / "bomb.npz")
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("extra.npy", b"\0" * 100_000)
        info = archive.getinfo("extra.npy")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start : start + info.compress_size] = b"\xff" * info.compress_size  # not a deflate stream
    path.write_bytes(bytes(data))
    _refused(path, "unexpected member 'extra.npy'")


def test_header_declaring_terabytes_is_refused_before_allocation(tmp_path):
    """A few bytes whose .npy header declares 10^6 x 10^6 float32 (3.6 TiB) as the prototypes."""
    member = io.BytesIO()
    npy_format.write_array_header_1_0(
        member, {"descr": "<f4", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
    )
    member.write(b"\0" * 64)
    path = _write(tmp_path / "bomb.npz", prototypes=None)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("prototypes.npy", member.getvalue())
    _refused(path, "'prototypes' declares \\(1000000, 1000000\\) float32")


def test_member_larger_than_any_head_needs_is_refused_from_the_directory(tmp_path):
    path = tmp_path / "h.npz"
    np.savez(path, **head_arrays(_head(dim=4096, svm=False)))  # 48 KiB of prototypes
    with pytest.raises(ArtifactError, match="member 'prototypes' declares 49280 bytes uncompressed"):
        read_npz(path, allowed_keys=head_arrays(_head()), check_headers=lambda h: None,
                 max_member_bytes=10_000, what="rfmml head file")  # fmt: skip


def test_shapes_must_follow_from_classes_and_dimension(tmp_path):
    _refused(_write(tmp_path / "a.npz", format_version=np.array([1, 1])), r"format_version of shape \(2,\)")
    _refused(
        _write(tmp_path / "b.npz", train_counts=np.zeros(40, np.int64)), r"train_counts of shape \(40,\)"
    )
    _refused(_write(tmp_path / "c.npz", svm_coef=np.zeros((3, 5), np.float32)), r"svm_coef of shape \(3, 5\)")
    names = np.array([f"c{i}" for i in range(MAX_CLASSES + 1)])
    _refused(_write(tmp_path / "d.npz", class_names=names), "1..255 classes")
    _refused(_write(tmp_path / "e.npz", prototypes=np.zeros(4, np.float32)), "expected \\[C, D\\]")


def test_dtypes_are_checked(tmp_path):
    _refused(_write(tmp_path / "a.npz", prototypes=np.zeros((3, 4), np.int32)), "prototypes of dtype int32")
    _refused(_write(tmp_path / "b.npz", distance=np.array(2.0)), "distance of dtype float64")
    _refused(_write(tmp_path / "c.npz", majority=np.ones(3, np.float32)), "majority of dtype float32")


def test_pickled_member_is_refused(tmp_path):
    names = np.array(["a", "b", "c"], dtype=object)  # np.savez pickles object arrays
    _refused(_write(tmp_path / "h.npz", class_names=names), "'class_names' holds pickled Python objects")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"svm_coef": np.full((3, 4), np.nan, np.float32)}, "non-finite svm_coef"),
        ({"svm_intercept": np.array([0, np.nan, 0], np.float32)}, "svm_intercept must be finite"),
        ({"svm_intercept": np.full(3, -np.inf, np.float32)}, "svm_intercept must be finite"),
        ({"prototypes": np.full((3, 4), np.inf, np.float32)}, "non-finite prototypes"),
        ({"distance": np.array("manhattan")}, "distance 'manhattan'"),
        ({"embedding_dim": np.array(5)}, "embedding_dim 5"),
        ({"input_size": np.array([0, 16])}, r"input_size \[0, 16\]"),
        ({"class_names": np.array(["a", "a", "b"])}, "unique"),
        ({"train_counts": np.array([1, -1, 2])}, "negative train_counts"),
        ({"metadata_json": np.array("{not json")}, "metadata_json is not a JSON object"),
        ({"svm_l2_normalize": None}, "go together"),
    ],
)
def test_bad_values_are_refused(tmp_path, changes, match):
    _refused(_write(tmp_path / "h.npz", **changes), match)


def test_version_missing_keys_and_non_archives(tmp_path):
    _refused(
        _write(tmp_path / "v.npz", format_version=np.array(3)), "format version 3, this rfmml reads 1, 2"
    )
    _refused(_write(tmp_path / "v2.npz", format_version=np.array(2)), "format_version 2 with no proto_centre")
    _refused(_write(tmp_path / "m.npz", prototypes=None), r"missing keys \['prototypes'\]")
    np.save(tmp_path / "single.npy", np.zeros(3))
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    _refused(tmp_path / "single.npz", "single array, not an .npz archive")
    (tmp_path / "text.npz").write_text("hello")
    _refused(tmp_path / "text.npz", "not a readable rfmml head file")
    truncated = _write(tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(truncated[: len(truncated) // 2])
    _refused(tmp_path / "t.npz", "not a readable rfmml head file")


def test_save_head_refuses_what_load_head_would_refuse(tmp_path):
    head = _head()
    bad = Head(**{**head.__dict__, "prototypes": np.full((3, 4), np.nan, np.float32)})
    with pytest.raises(
        ArtifactError, match="cannot write: malformed rfmml head file \\(non-finite prototypes"
    ):
        save_head(tmp_path / "h.npz", bad)
    assert not list(tmp_path.iterdir())
