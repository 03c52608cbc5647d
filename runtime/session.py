"""onnxruntime session creation: provider choice that is honest about what actually runs.

onnxruntime-gpu lists CUDA among the *available* providers even on a machine with no GPU, and asking for
CUDA there logs an error and silently falls back to the CPU. So "auto" only asks for CUDA when a CUDA
device is really present (driver loads and reports >= 1 device), calls ``onnxruntime.preload_dlls()``
first so the pip CUDA/cuDNN libraries are found, and then reads ``session.get_providers()`` to report
what is in use.
"""

from __future__ import annotations

import ctypes
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
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except (OSError, RuntimeError) as error:  # libraries missing: CUDA will then fail and be reported
            warnings.warn(f"onnxruntime.preload_dlls() failed ({error})", stacklevel=2)


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

    ``providers``: "auto" (CUDA when a device really works, else CPU), or a comma list such as
    "cuda,cpu" / "CPUExecutionProvider". An explicit CUDA request that falls back to the CPU is an error.
    """
    requested = parse_providers(providers)
    if not requested:
        use_cuda = "CUDAExecutionProvider" in ort.get_available_providers() and cuda_device_count() > 0
        requested = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        )
        strict = False
    else:
        strict = True
        if (
            requested[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
            and cuda_device_count() == 0
        ):
            raise ArtifactError(
                f"provider {requested[0]} requested but no CUDA device or driver (libcuda) found"
            )
    if "CUDAExecutionProvider" in requested or "TensorrtExecutionProvider" in requested:
        _preload_cuda()
    try:
        session = ort.InferenceSession(
            _source(model_path), sess_options=_options(threads), providers=requested
        )
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
