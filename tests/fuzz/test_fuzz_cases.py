"""The fuzz suite at its fast CI size: every case of every family must be clean.

A clean case exits 0 (valid input), 2 (one line "rfmml-<cmd>: error: ...") or 3 (partial, skipped
inputs listed), with no traceback, no hang, no wrong result, no lost output (see ``fuzz_harness``).
Memory-bound families run in subprocesses under RLIMIT_AS. ``benchmarks/fuzz.py`` runs the long size.
"""

from __future__ import annotations

import pytest
from fuzz_families import FAMILIES, make_case, missing
from fuzz_harness import failures_report, run_case

pytestmark = pytest.mark.fuzz


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_is_clean(family, fuzz_world):
    reason = missing(family, fuzz_world)
    if reason is not None:
        pytest.skip(reason)
    count = FAMILIES[family][1]
    verdicts = [run_case(make_case(family, seed, fuzz_world)) for seed in range(count)]
    assert all(v.kind == "clean" for v in verdicts), (
        f"{sum(v.kind != 'clean' for v in verdicts)} of {len(verdicts)} {family} cases not clean:\n"
        + failures_report(verdicts)
    )
