"""Progress: rewritten in place on a terminal, a few plain lines (every 10 %) in logs."""

from __future__ import annotations

import io

from rfmml.runtime.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_a_line_per_ten_percent_and_one_at_the_end():
    stream = io.StringIO()
    progress = Progress(total=1000, label="classifying", stream=stream)
    for _ in range(1000):
        progress.update(1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and "\r" not in stream.getvalue()
    assert [line.split()[1] for line in lines] == [f"{n}/1000" for n in range(100, 1001, 100)]
    assert lines[0].startswith("classifying 100/1000 tiles (10%)") and "tiles/s" in lines[0]
    assert lines[-1].startswith("classifying 1000/1000 tiles (100%)")


def test_big_updates_do_not_repeat_lines_and_phases_restart():
    stream = io.StringIO()
    progress = Progress(total=10, label="phase one", unit="images", stream=stream)
    progress.update(4)  # 40 %: one line, not four
    progress.update(6)  # done: left to close
    progress.close()
    progress.reset(4, label="phase two")
    progress.update(1)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "phase one 4/10 images",
        "phase one 10/10 images",
        "phase two 1/4 images",
        "phase two 1/4 images",
    ]


def test_terminal_line_is_rewritten_in_place():
    stream = Terminal()
    progress = Progress(total=3, stream=stream, interval=0.0)
    for _ in range(3):
        progress.update(1)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\x1b[K\n")
    assert text.split("\r")[-1].startswith("[####################] 3/3 tiles (100%)")
    assert text.split("\r")[1].startswith("[######--------------] 1/3 tiles (33%)")


def test_unknown_total_logs_by_time_and_disabled_is_silent():
    stream = io.StringIO()
    progress = Progress(stream=stream, log_interval=0.0)
    progress.update(5)
    progress.close()
    assert stream.getvalue().splitlines()[0].startswith("5 tiles")
    silent = io.StringIO()
    quiet = Progress(total=3, stream=silent, enabled=False)
    quiet.update(3)
    quiet.close()
    assert silent.getvalue() == "" and quiet.done == 3
