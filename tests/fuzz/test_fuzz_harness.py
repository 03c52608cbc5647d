"""The harness itself: a memory blow-up under RLIMIT_AS fails the case (not the machine), peak RSS is
the child's own, hangs are cut at the limit, and the verdicts follow the exit-code contract."""

from __future__ import annotations

import pytest
from fuzz_harness import COMMANDS, Case, Outcome, classify, run_case

pytestmark = pytest.mark.fuzz


@pytest.fixture
def selftest(monkeypatch):
    monkeypatch.setitem(COMMANDS, "selftest", ("fuzz_selftest_command", "rfmml-selftest"))


def test_memory_blowup_is_a_crash_under_the_limit(selftest):
    verdict = run_case(
        Case("self", 0, "selftest", ["alloc", str(8 << 30)], memory=True), memory_limit=1 << 30
    )
    assert verdict.kind == "crash"
    assert "MemoryError" in verdict.outcome.stderr


def test_peak_rss_is_the_childs_own_and_has_a_budget(selftest):
    case = Case("self", 0, "selftest", ["alloc", str(300 << 20)], memory=True)
    verdict = run_case(case)
    assert verdict.kind == "clean"
    assert 300 <= verdict.outcome.peak_rss_mib < 600  # numpy + 300 MiB, not this (torch-sized) process
    case.rss_budget_mib = 200
    verdict = run_case(case)
    assert (verdict.kind, verdict.reason.split(" ")[:2]) == ("crash", ["peak", "RSS"])


@pytest.mark.parametrize("memory", [False, True])
def test_hang_is_cut_at_the_limit(selftest, memory):
    verdict = run_case(Case("self", 0, "selftest", ["sleep", "30"], memory=memory, limit_s=1.0))
    assert verdict.kind == "hang"
    assert verdict.outcome.seconds < 10


def test_escaping_exception_is_a_crash(selftest):
    assert run_case(Case("self", 0, "selftest", ["raise"])).kind == "crash"


@pytest.mark.parametrize(
    ("code", "stderr", "expect", "kind"),
    [
        (0, "", "ok", "clean"),
        (3, "", "ok", "clean"),
        (2, "rfmml-infer: error: bad\n", "error", "clean"),
        (2, "", "error", "crash"),  # exit 2 without its one line
        (2, "rfmml-infer: error: a\nrfmml-infer: error: b\n", "error", "crash"),
        (1, "rfmml-infer: error: internal error: x\n", "any", "crash"),
        (137, "", "any", "crash"),
        (0, "Traceback (most recent call last):\n", "any", "crash"),
        (0, "", "error", "wrong"),  # bad input accepted
        (2, "rfmml-infer: error: no\n", "ok", "wrong"),  # valid input refused
        (None, "", "any", "hang"),
    ],
)
def test_verdicts(code, stderr, expect, kind):
    case = Case("self", 0, "infer", [], expect)
    assert classify(case, Outcome(code, "", stderr, 0.1)).kind == kind
