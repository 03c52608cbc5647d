"""Generators of cases on artifacts: tampered heads (.npz) and models (.onnx) for ``rfmml-infer``, head
bombs, and malicious / damaged checkpoints for ``rfmml-train`` and ``rfmml-export``."""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from fuzz_bytes import mutate, npy_header, npz_replace, npz_with_raw_deflate, random_bytes, zip_bomb_member
from fuzz_checks import PREVIOUS, folder_csv, marker_absent, no_temp_files, previous_kept
from fuzz_harness import Case
from fuzz_world import World, fresh_copy
from onnx import TensorProto, helper
from runtime_fixtures import build_stats_model, write_head

from rfmml.runtime.artifact import sha256_file
from rfmml.runtime.artifact_schema import REQUIRED_KEYS

Arrays = dict[str, np.ndarray]


def infer_tiles_case(world: World, family: str, seed: int, model: Path, head: Path | None, expect: str,
                     note: str, memory: bool = False) -> Case:  # fmt: skip
    """``rfmml-infer`` with ``model`` (+ ``head``) on a folder of one valid tile, over a previous CSV."""
    work = model.parent
    tiles = work / "tiles"
    tiles.mkdir(exist_ok=True)
    (tiles / "valid.png").write_bytes(world.valid_tile(seed % 4))
    out = work / "predictions.csv"
    out.write_bytes(PREVIOUS)
    argv = ["--model", str(model), str(tiles), "--out", str(out), "--quiet"]
    if head is not None:
        argv += ["--head", str(head)]
    checks = [folder_csv(out, {"valid.png"}, set()), previous_kept([out]), no_temp_files(work),
              marker_absent(world.marker)]  # fmt: skip
    return Case(family, seed, "infer", argv, expect, checks, memory=memory, limit_s=60 if memory else 30,
                note=note, workdir=work)  # fmt: skip


def _valid_arrays(world: World) -> Arrays:
    with np.load(world.head, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class _Evil:
    """Unpickling this creates the world's marker file (it must never happen)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _set(key: str, value) -> Callable[[Arrays, World], Arrays]:
    return lambda a, _w: {**a, key: value(a) if callable(value) else value}


def _drop(key: str) -> Callable[[Arrays, World], Arrays]:
    return lambda a, _w: {k: v for k, v in a.items() if k != key}


def _shape(a: Arrays) -> tuple[int, int]:
    return a["prototypes"].shape


def _other_dim(a: Arrays) -> Arrays:
    """Prototypes, SVM and embedding_dim all for D + 1: a self-consistent head for another model."""
    c, d = _shape(a)
    return {"prototypes": np.ones((c, d + 1), np.float32), "svm_coef": np.ones((c, d + 1), np.float32),
            "embedding_dim": np.array(d + 1)}  # fmt: skip


HEAD_MUTATIONS: dict[str, Callable[[Arrays, World], Arrays]] = {
    **{f"missing {key}": _drop(key) for key in REQUIRED_KEYS},
    "unknown extra key": _set("unexpected", np.zeros(3, np.float32)),
    "format_version shape (2,)": _set("format_version", np.array([1, 1])),
    "format_version 99": _set("format_version", np.array(99)),
    "format_version text": _set("format_version", np.array("1")),
    "format_version nan": _set("format_version", np.array(np.nan)),
    "object class_names (pickled)": lambda a, w: {
        **a,
        "class_names": np.array([_Evil(w.marker)] * 4, dtype=object),
    },
    "object prototypes (pickled)": lambda a, w: {
        **a,
        "prototypes": np.array([_Evil(w.marker)], dtype=object),
    },
    "prototypes text": _set("prototypes", lambda a: a["prototypes"].astype(str)),
    "prototypes 1-D": _set("prototypes", lambda a: a["prototypes"].ravel()),
    "prototypes 3-D": _set("prototypes", lambda a: a["prototypes"][None]),
    "prototypes D+1": _set("prototypes", lambda a: np.zeros((_shape(a)[0], _shape(a)[1] + 1), np.float32)),
    "prototypes C+1": _set("prototypes", lambda a: np.zeros((_shape(a)[0] + 1, _shape(a)[1]), np.float32)),
    "consistent head of another D": lambda a, _w: {**a, **_other_dim(a)},
    "prototypes empty": _set("prototypes", np.zeros((0, 3), np.float32)),
    "prototypes nan": _set("prototypes", lambda a: np.full(_shape(a), np.nan, np.float32)),
    "prototypes one inf": _set(
        "prototypes",
        lambda a: np.where(
            np.arange(a["prototypes"].size).reshape(_shape(a)) == 0, np.inf, a["prototypes"]
        ).astype(np.float32),
    ),  # noqa: E501
    "svm all nan": _set("svm_coef", lambda a: np.full(_shape(a), np.nan, np.float32)),
    "svm intercept nan": _set("svm_intercept", lambda a: np.full(_shape(a)[0], np.nan, np.float32)),
    "svm_coef without intercept": _drop("svm_intercept"),
    "svm_coef wrong shape": _set(
        "svm_coef", lambda a: np.zeros((_shape(a)[0], _shape(a)[1] + 2), np.float32)
    ),
    "svm_l2_normalize text": _set("svm_l2_normalize", np.array("maybe")),
    "input_size (3,)": _set("input_size", np.array([32, 32, 3])),
    "input_size zero": _set("input_size", np.array([0, 0])),
    "input_size negative": _set("input_size", np.array([-32, 32])),
    "input_size huge": _set("input_size", np.array([100000, 100000])),
    "input_size not the model's": _set("input_size", np.array([16, 16])),
    "input_size float nan": _set("input_size", np.array([np.nan, 32.0])),
    "class_names empty": _set("class_names", np.array([], dtype=str)),
    "class_names ints": _set("class_names", np.arange(4)),
    "class_names 2-D": _set("class_names", lambda a: a["class_names"].reshape(2, 2)),
    "class_names fewer": _set("class_names", lambda a: a["class_names"][:-1]),
    "distance unknown": _set("distance", np.array("manhattan")),
    "distance int": _set("distance", np.array(3)),
    "embedding_dim wrong": _set("embedding_dim", np.array(99)),
    "majority wrong length": _set("majority", np.ones(7, bool)),
    "train_counts wrong length": _set("train_counts", np.ones(9, np.int64)),
    "digest of another model": _set("onnx_sha256", np.array("0" * 64)),
    "digest not text": _set("onnx_sha256", np.array(12345)),
    "metadata not JSON": _set("metadata_json", np.array("{not json")),
}


HEAD_CASES = len(HEAD_MUTATIONS) + 4  # the mutations, then 4 kinds of damaged file


def _save_npz(arrays: Arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # allow_pickle is on when saving: object members are really pickled
    return buffer.getvalue()


def head_tamper(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A head with one contract violation (a key missing/extra/mistyped/misshapen, NaN, wrong digest,
    pickled member) or damaged bytes: refused with one line, the valid tile never classified by it."""
    work = world.scratch("head-tamper")
    model = fresh_copy(world.model, work / "model.onnx")
    names = list(HEAD_MUTATIONS)
    pick = seed % HEAD_CASES  # every mutation once in the first HEAD_CASES seeds
    if pick < len(names):
        name = names[pick]
        data, expect = _save_npz(HEAD_MUTATIONS[name](_valid_arrays(world), world)), "error"
    else:
        name = ("damaged bytes", "random bytes", "empty file", "plain .npy")[pick - len(names)]
        data, expect = _damaged_head(world, rng, name)
    head = work / "model.npz"
    head.write_bytes(data)
    return infer_tiles_case(world, "head-tamper", seed, model, head, expect, name)


def _damaged_head(world: World, rng: np.random.Generator, name: str) -> tuple[bytes, str]:
    valid = world.head.read_bytes()
    if name == "damaged bytes":
        kind, data = mutate(rng, valid)
        return data, "error" if kind == "truncated" else "any"
    if name == "random bytes":
        return random_bytes(rng, 1, 4096), "error"
    if name == "empty file":
        return b"", "error"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 3), np.float32))
    return buffer.getvalue(), "error"


_ZIP_BOMB: dict[int, tuple[bytes, int]] = {}


def head_bomb(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A head whose prototypes' .npy header declares 373 GiB, or with an unused extra key that inflates
    to 3.2 GB: refused from the headers, under the address-space limit (memory-bound)."""
    work = world.scratch("head-bomb")
    model = fresh_copy(world.model, work / "model.onnx")
    valid = world.head.read_bytes()
    if seed % 2 == 0:
        name = "npy header declaring 373 GiB"
        data = npz_replace(valid, {"prototypes.npy": npy_header((4, 25_000_000_000))})
    else:
        name = "extra key inflating to 3.2 GB"
        size = 3_200_000_000
        if size not in _ZIP_BOMB:
            _ZIP_BOMB[size] = zip_bomb_member(size)
        deflated, crc = _ZIP_BOMB[size]
        data = npz_with_raw_deflate(valid, "junk.npy", deflated, crc, size)
    head = work / "model.npz"
    head.write_bytes(data)
    return infer_tiles_case(world, "head-bomb", seed, model, head, "error", name, memory=True)


def _signature_model(path: Path, kind: str) -> Path:
    """A valid ONNX model whose signature breaks the contract in one way (``kind``)."""
    dims = {"nchw": ["batch", 3, 32, 32], "rank3": ["batch", 32, 96]}.get(kind, ["batch", 32, 32, 3])
    dtype = TensorProto.FLOAT if kind == "float input" else TensorProto.UINT8
    name_in = "x" if kind == "input named x" else "images"
    images = helper.make_tensor_value_info(name_in, dtype, dims)
    out_dim = 5 if kind == "output D=5" else 3
    out_type = TensorProto.INT64 if kind == "int64 output" else TensorProto.FLOAT
    name_out = "features" if kind == "output named features" else "embeddings"
    embeddings = helper.make_tensor_value_info(name_out, out_type, ["batch", out_dim])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2] if kind != "rank3" else [1, 1])
    nodes = [helper.make_node("Cast", [name_in], ["x_f"], to=TensorProto.FLOAT)]
    if kind == "rank3":
        nodes.append(helper.make_node("ReduceMean", ["x_f", "axes"], ["r"], keepdims=0))
        nodes.append(helper.make_node("Slice", ["r", "s0", "s1", "s2"], ["m"]))
        extra = [
            helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("s0", 0), ("s1", 3), ("s2", 1))
        ]
    else:
        nodes.append(helper.make_node("ReduceMean", ["x_f", "axes"], ["m"], keepdims=0))
        extra = []
    if out_dim == 5:
        nodes.append(helper.make_node("Concat", ["m", "m"], ["m6"], axis=1))
        nodes.append(helper.make_node("Slice", ["m6", "z0", "z5", "z1"], ["m5"]))
        extra += [
            helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("z0", 0), ("z5", 5), ("z1", 1))
        ]
        nodes.append(helper.make_node("Identity", ["m5"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["m"], ["y"]))
    nodes.append(helper.make_node("Cast", ["y"], [name_out], to=out_type))
    graph = helper.make_graph(nodes, "bad", [images], [embeddings], initializer=[axes, *extra])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


SIGNATURES = (
    "float input",
    "nchw",
    "rank3",
    "output D=5",
    "int64 output",
    "input named x",
    "output named features",
)


def model_tamper(world: World, rng: np.random.Generator, seed: int) -> Case:
    """A damaged model.onnx (head digest updated to it, or not), or a valid ONNX with a wrong signature:
    refused with one line (a name-only difference may be accepted, but never a wrong result)."""
    work = world.scratch("model-tamper")
    model = work / "model.onnx"
    head = work / "model.npz"
    protos = np.eye(4, 3, dtype=np.float32)
    if seed % 3 == 0:
        kind = SIGNATURES[(seed // 3) % len(SIGNATURES)]  # every signature within 21 seeds
        _signature_model(model, kind)
        write_head(model, protos, ("a", "b", "c", "d"))
        expect = "any" if "named" in kind else "error"
    else:
        source = build_stats_model(work / "source.onnx")
        kind, data = (
            mutate(rng, source.read_bytes()) if rng.random() < 0.85 else ("random", random_bytes(rng))
        )
        model.write_bytes(data)
        rebind = rng.random() < 0.7
        shutil.copyfile(write_head(source, protos, ("a", "b", "c", "d")), head)
        if rebind:
            _rebind(head, model)
        kind = f"{kind} ({'digest updated' if rebind else 'digest of the original'})"
        expect = "any" if (rebind and "truncated" not in kind and "random" not in kind) else "error"
    return infer_tiles_case(world, "model-tamper", seed, model, head, expect, kind)


def _rebind(head: Path, model: Path) -> None:
    with np.load(head, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["onnx_sha256"] = np.array(sha256_file(model))
    head.write_bytes(_save_npz(arrays))
