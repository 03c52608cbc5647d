"""The training device: what ``--device auto`` means, ``--deterministic``, and cuDNN's benchmark mode
(issue 14: the CUDA path)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from rfmml.trainer.errors import InputError

if TYPE_CHECKING:
    from rfmml.trainer.method_interface import Method

AUTO_DEVICE_ENV = "RFMML_AUTO_DEVICE"  # "cpu": "auto" means the CPU (the test suite pins it so)


def resolve_device(name: str) -> torch.device:
    """``--device``: "auto" = CUDA when available, else the CPU (or what $RFMML_AUTO_DEVICE says:
    the default test suite sets it to "cpu" so that it runs the same on a GPU machine)."""
    if name == "auto":
        pinned = os.environ.get(AUTO_DEVICE_ENV, "").strip().lower()
        if pinned == "cpu":
            return torch.device("cpu")
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available")
    return torch.device(name)


def use_deterministic_algorithms(warn: Callable[[str], None]) -> None:
    """``--deterministic``: torch's deterministic algorithms and cuBLAS's fixed workspace, so that a
    CUDA run repeats bit for bit (resume included). The environment variable must be set before CUDA
    initialises (cuBLAS reads it then); an existing value is kept."""
    if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():  # a program that used CUDA before calling run_training
            warn(
                "--deterministic: CUDA was initialised before CUBLAS_WORKSPACE_CONFIG could be set; "
                "set CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment for bit-exact cuBLAS"
            )
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(True)


def cudnn_benchmark(method: Method, deterministic: bool) -> bool:
    """Whether cuDNN may time its algorithms per input shape: only for methods with fixed batch shapes
    (every phase counts epochs: the cross-entropy batches). An episodic method draws ~100 different
    episode sizes (K x N + queries vary per episode), and benchmark mode re-tunes every convolution
    for each new size: slower than the heuristic choice for thousands of episodes. Padding episodes
    to a few bucket sizes would keep it, but changes BatchNorm statistics (padded images enter the
    batch), so CPU metrics would no longer be those of the paper's loss. Never with --deterministic."""
    return not deterministic and all(phase.unit == "epoch" for phase in method.phases)
