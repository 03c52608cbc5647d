"""onnxruntime session creation: provider choice that is honest about what actually runs.

onnxruntime-gpu lists CUDA among the *available* providers even on a machine with no GPU, and asking for
CUDA there logs an error and silently falls back to the CPU. So "auto" only asks for CUDA when a CUDA
device is really present (driver loads and reports >= 1 device), calls ``onnxruntime.preload_dlls()``
first so the pip CUDA/cuDNN libraries are found (its messages go to stderr: stdout may carry a CSV), and
then reads ``session.get_providers()`` to report what is in use. "auto" keeps int8 models on the CPU
(their fast path) and means the CPU when $RFMML_AUTO_DEVICE is "cpu" (the default test suite). CUDA
runs with heuristic cuDNN algorithm search and TF32 off (embeddings that match the CPU-fitted heads);
requested providers are tried in the order TensorRT, CUDA, CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import re
import sys
import warnings
from pathlib import Path

import onnxruntime as ort

from rfmml.runtime.artifact import INPUT_NAME, OUTPUT_NAME, ArtifactError
from rfmml.runtime.errors import InputError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports; 0 when there is no driver or no device."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def parse_providers(spec: str) -> list[str]:
    """``"auto"`` -> [] (decided at session time); else a comma list of aliases or onnxruntime names."""
    spec = spec.strip()
    if spec.lower() == "auto":
        return []
    names = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        names.append(PROVIDER_ALIASES.get(item.lower(), item))
    available = ort.get_available_providers()
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        raise InputError(
            f"unknown or unavailable providers {unknown or spec!r}; this onnxruntime has {available} "
            "(aliases: auto, cpu, cuda, tensorrt)"
        )
    if "CPUExecutionProvider" not in names:
        names.append("CPUExecutionProvider")
    return names


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads > 0:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return options


def _preload_cuda() -> None:
    """Let onnxruntime find the pip CUDA/cuDNN libraries. ``preload_dlls`` prints what it cannot find
    on stdout; that goes to stderr here, so a CSV or JSON written to stdout stays clean."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            with contextlib.redirect_stdout(sys.stderr):
                preload()
        except (OSError, RuntimeError) as error:  # libraries missing: CUDA will then fail and be reported
            warnings.warn(f"onnxruntime.preload_dlls() failed ({error})", stacklevel=2)


QUANTIZED_OPS = re.compile(rb"QuantizeLinear|QLinearConv|QLinearMatMul|ConvInteger|MatMulInteger")


def is_quantized(model_path: str | Path) -> bool:
    """Whether the ONNX file holds int8 operators (QDQ or QOperator): their names are plain strings
    in the protobuf. CUDA runs such models slower than fp32 (and TensorRT needs its own calibration),
    while the CPU's int8 kernels are its fastest path: "auto" keeps them on the CPU."""
    try:
        with open(model_path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return QUANTIZED_OPS.search(data) is not None  # one pass over the file
    except (OSError, ValueError):  # unreadable or empty: the session reports it
        return False


def auto_providers(model_path: str | Path) -> list[str]:
    """What "auto" asks for: CUDA then CPU when a CUDA device really works, the model is not int8 and
    $RFMML_AUTO_DEVICE is not "cpu" (the default test suite pins the CPU so); else the CPU alone."""
    pinned = os.environ.get("RFMML_AUTO_DEVICE", "").strip().lower() == "cpu"
    use_cuda = (
        not pinned
        and "CUDAExecutionProvider" in ort.get_available_providers()
        and cuda_device_count() > 0
        and not is_quantized(model_path)
    )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]


# TensorRT first (it hands what it cannot run to the next), CUDA next, the CPU last.
PROVIDER_RANK = {"TensorrtExecutionProvider": 0, "CUDAExecutionProvider": 1, "CPUExecutionProvider": 3}
# cuDNN's heuristic algorithm choice: exhaustive search re-times every convolution per new batch shape;
# TF32 off: GPU embeddings must match the CPU-fitted heads (TF32 rounds matmul inputs to 10 bits).
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"}


def with_options(names: list[str]) -> list[str | tuple[str, dict[str, str]]]:
    """``names`` ordered TensorRT, CUDA, (others), CPU; CUDA with :data:`CUDA_OPTIONS`; a TensorRT
    request gets CUDA between it and the CPU when this onnxruntime has CUDA."""
    names = list(dict.fromkeys(names))
    if "TensorrtExecutionProvider" in names and "CUDAExecutionProvider" not in names:
        if "CUDAExecutionProvider" in ort.get_available_providers():
            names.append("CUDAExecutionProvider")
    names.sort(key=lambda name: PROVIDER_RANK.get(name, 2))
    return [(name, dict(CUDA_OPTIONS)) if name == "CUDAExecutionProvider" else name for name in names]


def _source(model_path: str | Path) -> str | bytes:
    """The path for onnxruntime, or the model's bytes when the name is not UTF-8 (onnxruntime
    encodes paths as UTF-8; a single-file model loads the same from its bytes)."""
    text = str(model_path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Path(model_path).read_bytes()
    return text


def create_session(model_path: str | Path, providers: str = "auto", threads: int = 0) -> ort.InferenceSession:
    """An InferenceSession for ``model_path``; ArtifactError (one line) when the file is not a model.

    ``providers``: "auto" (CUDA when a device really works and the model is not int8, else CPU), or a
    comma list such as "cuda,cpu" / "CPUExecutionProvider", tried in the order TensorRT, CUDA (with
    :data:`CUDA_OPTIONS`), CPU. An explicit CUDA request that falls back to the CPU is an error.
    """
    requested = parse_providers(providers)
    strict = bool(requested)
    asked = with_options(requested if strict else auto_providers(model_path))
    requested = [entry if isinstance(entry, str) else entry[0] for entry in asked]
    if strict and requested[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        if cuda_device_count() == 0:
            raise ArtifactError(
                f"provider {requested[0]} requested but no CUDA device or driver (libcuda) found"
            )
    if "CUDAExecutionProvider" in requested or "TensorrtExecutionProvider" in requested:
        _preload_cuda()
    try:
        session = ort.InferenceSession(_source(model_path), sess_options=_options(threads), providers=asked)
    except Exception as error:  # onnxruntime raises its own exception types for bad protobufs
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"{model_path}: not a loadable ONNX model ({first})") from None
    in_use = session.get_providers()
    if strict and requested[0] not in in_use:
        raise ArtifactError(f"provider {requested[0]} was requested but could not start (in use: {in_use})")
    if not strict and in_use[0] != requested[0]:
        session = ort.InferenceSession(
            _source(model_path), sess_options=_options(threads), providers=["CPUExecutionProvider"]
        )
    check_signature(session, model_path)
    return session


def check_signature(session: ort.InferenceSession, model_path: str | Path) -> tuple[int | None, int | None]:
    """Check the contract's input/output; return the model's static (H, W) (None where dynamic)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names_in, names_out = [i.name for i in inputs], [o.name for o in outputs]
    if INPUT_NAME not in names_in or OUTPUT_NAME not in names_out:
        raise ArtifactError(
            f"{model_path}: expected input '{INPUT_NAME}' and output '{OUTPUT_NAME}', "
            f"found inputs {names_in} and outputs {names_out}"
        )
    spec = inputs[names_in.index(INPUT_NAME)]
    shape = list(spec.shape)
    if spec.type != "tensor(uint8)" or len(shape) != 4 or shape[3] not in (3, "3"):
        raise ArtifactError(
            f"{model_path}: input '{INPUT_NAME}' is {spec.type} {shape}, expected uint8 [batch, H, W, 3]"
        )
    out = outputs[names_out.index(OUTPUT_NAME)]
    if out.type != "tensor(float)" or len(out.shape) != 2:
        raise ArtifactError(
            f"{model_path}: output '{OUTPUT_NAME}' is {out.type} {out.shape}, expected float32 [batch, D]"
        )
    height = shape[1] if isinstance(shape[1], int) else None
    width = shape[2] if isinstance(shape[2], int) else None
    return height, width
