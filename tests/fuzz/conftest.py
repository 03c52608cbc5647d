"""Fixtures of the fuzz suite: one world (model pair, tiles, scenes, tiny run) per session."""

from __future__ import annotations

import pytest
from fuzz_world import World, build_world


@pytest.fixture(scope="session")
def fuzz_world(tmp_path_factory) -> World:
    """Built once: the colour model pair, valid tiles and scenes, and (with torch) a tiny training run."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return build_world(tmp_path_factory.mktemp("fuzz"), train=False)
    return build_world(tmp_path_factory.mktemp("fuzz"))
