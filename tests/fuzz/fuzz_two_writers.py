"""A test-only command for the two-writers family: ``main([command, *args_a, "--second--", *args_b])``
starts two processes of ``rfmml-<command>`` at once (args_a and args_b), waits for both, relays their
stderr, and prints ``{"codes": [a, b]}`` on stdout. Exit 0 when both exit codes are documented ones
(0, 2, 3), else 1 (the harness then reports a crash)."""

from __future__ import annotations

import json
import subprocess
import sys

from fuzz_harness import COMMANDS

SEPARATOR = "--second--"
_CHILD = "import sys, importlib; sys.exit(importlib.import_module(sys.argv[1]).main(sys.argv[2:]))"


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    cut = rest.index(SEPARATOR)
    module = COMMANDS[command][0]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, module, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for args in (rest[:cut], rest[cut + 1 :])
    ]
    codes = []
    for child in children:
        _out, err = child.communicate()
        sys.stderr.write(err)
        codes.append(child.returncode)
    print(json.dumps({"codes": codes}))
    return 0 if all(code in (0, 2, 3) for code in codes) else 1
