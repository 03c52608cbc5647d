"""Fixtures of the fuzz suite: one world (model pair, tiles, scenes, tiny run) per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzz_world import World, build_world


@pytest.fixture(scope="session")
def fuzz_world(tmp_path_factory) -> Iterator[World]:
    """Built once: the colour model pair, valid tiles and scenes, (with torch) a tiny training run, and
    (as root) a small tmpfs for the full-disk cases, unmounted at the end."""
    try:
        import torch  # noqa: F401
    except ImportError:
        world = build_world(tmp_path_factory.mktemp("fuzz"), train=False)
    else:
        world = build_world(tmp_path_factory.mktemp("fuzz"))
    yield world
    world.close()
