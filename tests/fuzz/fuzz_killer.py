"""A test-only command for the kill family: ``main([command, delay_s, *args])`` starts ``rfmml-<command>``
with ``args``, sends SIGKILL after ``delay_s`` seconds (when it is still running), then runs the
command again to completion (rfmml-train: ``--resume`` of the run folder, or, when that says there is
nothing to resume from, the same command again), relays the stderr of the runs that were not killed,
and prints ``{"killed": bool, "first": code, "again": code}``. Exit 0 when the last run exits with a
documented code (0, 2, 3), else 1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from fuzz_harness import COMMANDS

_CHILD = "import sys, importlib; sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))"


def _start(module: str, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _CHILD, module, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def main(argv: list[str]) -> int:
    command, delay, args = argv[0], float(argv[1]), argv[2:]
    module = COMMANDS[command][0]
    child = _start(module, args)
    deadline = time.monotonic() + delay
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed = child.poll() is None
    if killed:
        child.send_signal(signal.SIGKILL)
    _out, err = child.communicate()
    if not killed:
        sys.stderr.write(err)  # a killed run's partial stderr is not judged
    again_args = ["--resume", args[args.index("--out") + 1], "--no-progress"] if command == "train" else args
    again = _start(module, again_args)
    _out, err = again.communicate()
    if command == "train" and again.returncode == 2:  # killed before its first checkpoint: start again
        again = _start(module, args)
        _out, err = again.communicate()
    sys.stderr.write(err)
    print(json.dumps({"killed": killed, "first": child.returncode, "again": again.returncode}))
    return 0 if again.returncode in (0, 2, 3) else 1
