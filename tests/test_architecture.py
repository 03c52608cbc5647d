"""The architecture holds (docs/ARCHITECTURE.md): import-linter layers, ruff with the complexity rules,
and the import-time promises (no onnxruntime for the trainer's split or rfmml-compare, no torch for
``rfmml-infer --help``)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("trainer", "runtime", "export")
# The runtime modules the trainer may import (the shared leaves); every other runtime module must be
# in the import-linter contract that forbids it to the trainer.
RUNTIME_LEAVES = {
    "__init__",
    "errors",
    "cli_shell",
    "atomic_files",
    "imageio",
    "artifact",
    "artifact_schema",
    "safe_npz",
    "heads",
    "progress",
}


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


def test_import_layers_hold() -> None:
    """``lint-imports`` exactly as a developer runs it in the checkout (grimp finds the three packages
    through the links rfmml_ns/{trainer,runtime,export})."""
    result = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_runtime_module_is_a_leaf_or_forbidden_to_the_trainer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    trainer = next(c for c in contracts if c["source_modules"] == ["rfmml.trainer"])
    forbidden = {m.removeprefix("rfmml.runtime.") for m in trainer["forbidden_modules"]}
    modules = {p.stem for p in (ROOT / "runtime").glob("*.py")}
    assert sorted(modules - RUNTIME_LEAVES - forbidden) == []
    assert sorted(RUNTIME_LEAVES & forbidden) == []


def test_ruff_with_complexity_rules_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", *PACKAGES, "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:]


PROBE = (
    "import json, sys, importlib\n"
    "for name in sys.argv[1:]: importlib.import_module(name)\n"
    "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
)


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        (["rfmml.trainer.split"], "onnxruntime"),
        (["rfmml.trainer.compare"], "onnxruntime"),
        (["rfmml.trainer.compare"], "torch"),
        (["rfmml.runtime.cli"], "torch"),
        (["rfmml.runtime.errors", "rfmml.runtime.imageio"], "onnxruntime"),
    ],
)
def test_import_does_not_load(modules: list[str], absent: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    assert absent not in json.loads(probe.stdout)


def test_infer_help_does_not_load_torch() -> None:
    code = (
        "import sys\nfrom rfmml.runtime.cli import main\ncode = main(['--help'])\n"
        "heavy = {'torch', 'onnxruntime', 'dask', 'distributed'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, f'heavy import: {heavy}'\n"
        "sys.exit(code)"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert "--model" in probe.stdout


def test_every_lazy_runtime_name_resolves() -> None:
    """``rfmml.runtime``'s lazy table points at modules that exist and define each name."""
    import rfmml.runtime as runtime

    missing = [name for name in runtime.__all__ if not hasattr(runtime, name)]
    assert missing == []
