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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rfmml.trainer.cli", "rfmml-train"),
    "export": ("rfmml.export.cli", "rfmml-export"),
    "infer": ("rfmml.runtime.cli", "rfmml-infer"),
    "compare": ("rfmml.trainer.compare", "rfmml-compare"),
    "demo": ("rfmml.export.demo", "rfmml-demo"),
    "enroll": ("rfmml.runtime.enroll_cli", "rfmml-enroll"),
    "two-writers": ("fuzz_two_writers", "rfmml-two-writers"),  # two processes of one command (tests only)
    "kill": ("fuzz_killer", "rfmml-kill"),  # a command killed with SIGKILL, then run again (tests only)
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
    rss_budget_mib: float = RSS_BUDGET_MIB
    address_limit: int | None = None  # RLIMIT_AS of a memory-bound case (default: by its command)
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
        # catch_warnings: every case warns afresh, as in a new process (no once-per-location memory)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
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


# The child reports its own high-water RSS (VmHWM of its address space after exec; the rusage of a
# forked child also counts the parent's pages it shared before exec: this process, torch and all), or
# that of its largest child when it runs commands itself (the kill and two-writer helpers).
_CHILD = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
def report():
    with open("/proc/self/status") as status:
        own = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # its own children (kill, pairs)
    with open(sys.argv[3], "w") as out:
        out.write(str(max(own, children)))
try:
    import importlib
    code = importlib.import_module(sys.argv[2]).main(sys.argv[4:])
finally:
    report()
sys.exit(code)
"""


def run_in_subprocess(case: Case, memory_limit: int = MEMORY_LIMIT) -> Outcome:
    """Run the case in a fresh interpreter under RLIMIT_AS; peak RSS as the child reports it (its
    VmHWM), or from ``os.wait4`` when it could not report (killed)."""
    module = COMMANDS[case.command][0]
    with tempfile.TemporaryDirectory() as folder:
        rss_file = Path(folder) / "vmhwm"
        argv = [sys.executable, "-c", _CHILD, str(memory_limit), module, str(rss_file), *case.argv]
        out_path, err_path = Path(folder) / "stdout", Path(folder) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            start = time.perf_counter()
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": _child_path()}
            child = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
            status, usage = _wait(child, case.limit_s)
            seconds = time.perf_counter() - start
        stdout = out_path.read_bytes().decode("utf-8", "replace")
        stderr = err_path.read_bytes().decode("utf-8", "replace")
        reported = rss_file.read_text().strip() if rss_file.is_file() else ""
    code: int | None = None
    if status is not None:
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code  # killed by a signal: the shell's 128 + N
    rss = int(reported) / 1024.0 if reported else (usage.ru_maxrss / 1024.0 if usage else None)
    return Outcome(code, stdout, stderr, seconds, rss)


def _child_path() -> str:
    """PYTHONPATH of a child: this folder first (the harness's own test commands live here)."""
    here = str(Path(__file__).resolve().parent)
    return os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])


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
    if outcome.peak_rss_mib is not None and outcome.peak_rss_mib > case.rss_budget_mib:
        reason = f"peak RSS {outcome.peak_rss_mib:.0f} MiB > {case.rss_budget_mib:.0f}"
        return Verdict(case, outcome, "crash", reason)
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


TORCH_MEMORY_LIMIT = 6 << 30  # torch maps its CUDA libraries at import: more address space, same idea


def run_case(case: Case, memory_limit: int | None = None) -> Verdict:
    if memory_limit is None and case.address_limit is not None:
        memory_limit = case.address_limit
    if memory_limit is None:
        torch_commands = ("train", "export", "demo")
        uses_torch = case.command in torch_commands or (
            case.command == "two-writers" and case.argv[0] in torch_commands
        )
        memory_limit = TORCH_MEMORY_LIMIT if uses_torch else MEMORY_LIMIT
    outcome = run_in_subprocess(case, memory_limit) if case.memory else run_in_process(case)
    return classify(case, outcome)


def failures_report(verdicts: list[Verdict]) -> str:
    """The failing verdicts, one line each (empty when every case is clean)."""
    bad = [v for v in verdicts if v.kind != "clean"]
    return "\n".join(v.line() for v in bad)
