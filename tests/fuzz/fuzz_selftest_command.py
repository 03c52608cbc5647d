"""A stand-in command for the harness's own tests: ``main(["alloc", N])`` touches N bytes,
``main(["sleep", S])`` sleeps S seconds, ``main(["raise"])`` raises; else exit code int(argv[0])."""

from __future__ import annotations

import time

import numpy as np


def main(argv: list[str]) -> int:
    if argv[0] == "alloc":
        block = np.ones(int(argv[1]), dtype=np.uint8)  # ones, not zeros: the pages are really touched
        return 0 if block[-1] == 1 else 1
    if argv[0] == "sleep":
        time.sleep(float(argv[1]))
        return 0
    if argv[0] == "raise":
        raise RuntimeError("a bug")
    return int(argv[0])
