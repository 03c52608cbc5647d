"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

EUROSAT = Path(__file__).resolve().parents[1].parent / "shared/data/EuroSAT"


@pytest.fixture(scope="session")
def eurosat_root() -> Path:
    """The EuroSAT folder (10 class folders of 64x64 JPEGs) beside the checkout; skip when absent."""
    if not (EUROSAT.is_dir() and any(EUROSAT.iterdir())):
        pytest.skip(f"EuroSAT not found at {EUROSAT} (place the dataset there to run this test)")
    return EUROSAT


@pytest.fixture(autouse=True)
def _cpu_unless_marked_cuda(request, monkeypatch) -> None:
    """Device-neutral suite: "auto" (training's --device, the runtime's providers) means the CPU in
    every test not marked ``cuda``, in this process and in the commands it starts (the environment is
    inherited), so a GPU machine runs the same CPU-exact checks; ``cuda`` tests see the real "auto"."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setenv("RFMML_AUTO_DEVICE", "cpu")
    else:
        monkeypatch.delenv("RFMML_AUTO_DEVICE", raising=False)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items) -> None:
    """Skip tests marked ``cuda`` when no CUDA device is present."""
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:  # not keywords: test names may say "cuda"
            item.add_marker(skip)
