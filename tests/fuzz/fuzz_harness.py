"""Run one fuzz case through a command's ``main(argv) -> int`` and classify what happened.

A :class:`Case` is one command line (plus the checks that judge its result); :func:`run_case` runs it
in-process (stdout/stderr captured, a wall-clock alarm for hangs) or, for memory-bound cases, in a
subprocess under ``RLIMIT_AS`` with its peak RSS measured; :func:`classify` says what the outcome is:

    clean  exit 0 (valid input), 2 (one line "rfmml-<cmd>: error: ..."), or 3 (partial), no traceback
    crash  a traceback, an exit code outside {0, 2, 3} (1 = internal error = a bug), or an exit 2
           without exactly one error line
    hang   over the case's time limit
    wrong  a wrong result: exit 0 on input that must be refused, a valid input refused, a NaN score, a
           tampered file classified, code from a pickle that ran
    lost   a previous output destroyed or a half-written output (or temporary file) left behind
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rfmml.trainer.cli", "rfmml-train"),
    "export": ("rfmml.export.cli", "rfmml-export"),
    "infer": ("rfmml.runtime.cli", "rfmml-infer"),
    "compare": ("rfmml.trainer.compare", "rfmml-compare"),
    "demo": ("rfmml.export.demo", "rfmml-demo"),
}
CLEAN_CODES = (0, 2, 3)
KINDS = ("clean", "crash", "hang", "wrong", "lost")
MEMORY_LIMIT = 3 << 30  # bytes of address space for memory-bound cases (onnxruntime + numpy fit in it)
RSS_BUDGET_MIB = 1024.0  # peak resident memory a memory-bound case may use (a tiny input: no big buffers)
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Outcome:
    """What one run did: exit code (None when it hung), captured text, wall time, peak RSS (MiB)."""

    code: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float | None = None

    @property
    def hung(self) -> bool:
        return self.code is None


# A check looks at the outcome (and the files the case wrote) and returns (kind, reason) or None.
Check = Callable[[Outcome], "tuple[str, str] | None"]


@dataclass
class Case:
    """One fuzz case. ``expect``: "error" (must be refused: exit 2, or 3 for a folder), "ok" (valid:
    exit 0 or 3), or "any" (either is clean). ``memory``: run in a subprocess under RLIMIT_AS."""

    family: str
    seed: int
    command: str
    argv: list[str]
    expect: str = "any"
    checks: list[Check] = field(default_factory=list)
    memory: bool = False
    limit_s: float = 30.0
    note: str = ""
    workdir: Path | None = None  # the case's scratch folder (removed after it ran, by long runs)

    @property
    def prog(self) -> str:
        return COMMANDS[self.command][1]

    def command_line(self) -> str:
        return " ".join([self.prog, *(_quote(arg) for arg in self.argv)])


@dataclass
class Verdict:
    case: Case
    outcome: Outcome
    kind: str
    reason: str = ""

    def line(self) -> str:
        """One compact line: family, seed, command line, exit code, why, last stderr line."""
        last = _last_line(self.outcome.stderr)
        code = "hang" if self.outcome.hung else self.outcome.code
        return (
            f"[{self.kind}] {self.case.family} seed={self.case.seed} exit={code} "
            f"({self.reason}) :: {self.case.command_line()} :: {last[:300]}"
        )


class HangTimeout(BaseException):
    """Raised by the alarm inside an in-process case that ran past its limit (not an Exception, so
    no command code can swallow it)."""


def _quote(arg: str) -> str:
    text = arg if arg.isprintable() else ascii(arg)
    return text if text and " " not in text and "," not in text else repr(text)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _alarm(_signum, _frame) -> None:
    raise HangTimeout


def run_in_process(case: Case) -> Outcome:
    """Call ``main(argv)`` of the case's command with stdout/stderr captured and a SIGALRM limit."""
    module = importlib.import_module(COMMANDS[case.command][0])
    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, case.limit_s)
    start = time.perf_counter()
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = module.main(list(case.argv))
            except HangTimeout:
                code = None
            except SystemExit as done:  # a main that exits instead of returning is a crash to report
                code = done.code if isinstance(done.code, int) else 1
                print(f"{TRACEBACK}\nSystemExit({done.code!r}) escaped main()", file=sys.stderr)
            except Exception:  # an exception escaping main() is exactly what the suite records
                traceback.print_exc()
                code = 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


_CHILD = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import importlib
module = importlib.import_module(sys.argv[2])
sys.exit(module.main(sys.argv[3:]))
"""


def run_in_subprocess(case: Case, memory_limit: int = MEMORY_LIMIT) -> Outcome:
    """Run the case in a fresh interpreter under RLIMIT_AS; peak RSS from ``os.wait4`` of that child."""
    module = COMMANDS[case.command][0]
    argv = [sys.executable, "-c", _CHILD, str(memory_limit), module, *case.argv]
    env = {**os.environ, "PYTHONFAULTHANDLER": "0", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        status, usage = _wait(child, case.limit_s)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    code: int | None = None
    if status is not None:
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N
    return Outcome(code, stdout, stderr, seconds, usage.ru_maxrss / 1024.0 if usage else None)


def _wait(child: subprocess.Popen, limit_s: float) -> tuple[int | None, resource.struct_rusage | None]:
    deadline = time.monotonic() + limit_s
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid == child.pid:
            child.returncode = 0  # reaped here: keep Popen from waiting on it again
            return status, usage
        if time.monotonic() > deadline:
            child.kill()
            _pid, _status, usage = os.wait4(child.pid, 0)
            child.returncode = -9
            return None, usage
        time.sleep(0.02)


def classify(case: Case, outcome: Outcome) -> Verdict:
    """The verdict for one outcome (see the module docstring)."""
    if outcome.hung:
        return Verdict(case, outcome, "hang", f"over {case.limit_s:.0f} s")
    if TRACEBACK in outcome.stderr or TRACEBACK in outcome.stdout:
        return Verdict(case, outcome, "crash", "traceback")
    if outcome.code not in CLEAN_CODES:
        return Verdict(case, outcome, "crash", f"exit {outcome.code}")
    if outcome.peak_rss_mib is not None and outcome.peak_rss_mib > RSS_BUDGET_MIB:
        return Verdict(
            case, outcome, "crash", f"peak RSS {outcome.peak_rss_mib:.0f} MiB > {RSS_BUDGET_MIB:.0f}"
        )
    errors = [line for line in outcome.stderr.splitlines() if line.startswith(f"{case.prog}: error:")]
    if outcome.code == 2 and len(errors) != 1:
        return Verdict(case, outcome, "crash", f"exit 2 with {len(errors)} error lines")
    for check in case.checks:
        found = check(outcome)
        if found is not None:
            return Verdict(case, outcome, *found)
    if case.expect == "error" and outcome.code == 0:
        return Verdict(case, outcome, "wrong", "bad input accepted (exit 0)")
    if case.expect == "ok" and outcome.code == 2:
        return Verdict(case, outcome, "wrong", "valid input refused (exit 2)")
    return Verdict(case, outcome, "clean")


def run_case(case: Case, memory_limit: int = MEMORY_LIMIT) -> Verdict:
    outcome = run_in_subprocess(case, memory_limit) if case.memory else run_in_process(case)
    return classify(case, outcome)


def failures_report(verdicts: list[Verdict]) -> str:
    """The failing verdicts, one line each (empty when every case is clean)."""
    bad = [v for v in verdicts if v.kind != "clean"]
    return "\n".join(v.line() for v in bad)
