"""The runtime stays light: importing it (and its CLI) never pulls in torch or the trainer/exporter."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = (
    "import json, sys\n"
    "import rfmml.runtime, rfmml.runtime.cli, rfmml.runtime.scene, rfmml.runtime.outputs\n"
    "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'sklearn', 'tqdm')"
    " or m.startswith(('rfmml.trainer', 'rfmml.export'))]\n"
    "print(json.dumps(heavy))\n"
)


def test_fresh_interpreter_imports_no_torch():
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == []


def test_cli_help_runs_without_torch():
    code = (
        "import sys; from rfmml.runtime.cli import main; main(['--help']); assert 'torch' not in sys.modules"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert "rfmml-infer" in probe.stdout and "--providers" in probe.stdout
