"""The one atomic-write mechanism: all or nothing, ordinary file permissions, temporaries named for
their writer, and the stale ones of killed writers removed by the next writer (issue 9 item 8)."""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rfmml.runtime.atomic_files import (
    atomic_write,
    atomic_write_bytes,
    host_token,
    process_alive,
    remove_stale_temporaries,
    temporary_for,
    umask_mode,
)


def test_written_files_get_the_umask_mode_not_0600(tmp_path: Path) -> None:
    target = tmp_path / "split.json"
    atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert os.stat(target).st_mode & 0o777 == umask_mode()
    assert umask_mode() == 0o666 & ~_current_umask()


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    target.write_bytes(b"old")

    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_the_temporary_says_who_wrote_it_and_a_failed_write_removes_it(tmp_path: Path) -> None:
    seen = []

    def failing(tmp: Path) -> None:
        seen.append(tmp.name)
        assert os.stat(tmp).st_mode & 0o777 == 0o600  # private while half written
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(tmp_path / "last.pt", failing, tag="rfmml-train")
    assert re.fullmatch(rf"\.last\.pt\.rfmml-train\.{host_token()}\.{os.getpid()}-\d+\.tmp", seen[0])
    assert temporary_for(tmp_path / "m.png").name.startswith(f".m.png.rfmml.{host_token()}.{os.getpid()}-")
    assert temporary_for(tmp_path / "m.png") != temporary_for(tmp_path / "m.png")  # a counter
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_without_a_file_name_names_the_target(tmp_path: Path) -> None:
    def full_disk(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as a failed handle.write says it

    with pytest.raises(OSError) as raised:
        atomic_write(tmp_path / "model.onnx", full_disk)
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(tmp_path / "model.onnx"))
    assert list(tmp_path.iterdir()) == []


# "": names of earlier versions (no host), judged by pid as they were, so an upgrade still cleans them
@pytest.mark.parametrize("host", [f".{host_token()}", ""], ids=["this-host", "earlier-version"])
def test_only_stale_temporaries_of_the_tag_are_removed(tmp_path: Path, host: str) -> None:
    dead, alive, me = _dead_pid(), os.getppid(), os.getpid()
    started = time.time()
    infer = f"rfmml-infer{host}"
    stale = [
        f".map.tif.{infer}.{dead}-3.tmp",
        f".map.tif.{infer}.{dead}-3.tmp.aux.xml",  # GDAL's sidecar beside it
        f"..model.npz.{infer}.{dead}-4.tmp.rfmml{host}.{dead}-5.tmp",  # an atomic write into ours
        f".old.csv.{infer}.{me}-1.tmp",  # this pid, but from before this writer began (a reused pid)
    ]
    kept = [
        f".map.csv.{infer}.{alive}-1.tmp",  # a live writer's
        f".new.csv.{infer}.{me}-2.tmp",  # this writer's own, written after it began
        f".last.pt.rfmml-train{host}.{dead}-1.tmp",  # another command's
        f".last.pt.rfmml{host}.{dead}-1.tmp",  # the default tag is another tag
        f".map.tif.{infer}.{dead}.tmp",  # not the pattern (no counter)
        f"map.tif.{infer}.{dead}-1.tmp",  # not hidden
        f".map.tif.{infer}.{dead}-1.tmp.bak",
        f".map.tif.{infer}.0-1.tmp.txt",
        "map.tif",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"x")
    os.utime(tmp_path / f".old.csv.{infer}.{me}-1.tmp", (started - 60, started - 60))
    os.utime(tmp_path / f".new.csv.{infer}.{me}-2.tmp", (started + 1, started + 1))
    (tmp_path / f".dir.tif.{infer}.{dead}-1.tmp").mkdir()  # a folder is never removed
    (tmp_path / f".link.tif.{infer}.{dead}-1.tmp").symlink_to(tmp_path / "map.tif")  # nor a link
    kept += [f".dir.tif.{infer}.{dead}-1.tmp", f".link.tif.{infer}.{dead}-1.tmp"]

    removed = remove_stale_temporaries(tmp_path, "rfmml-infer", started)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    (tmp_path / f".old.csv.{infer}.{me}-1.tmp").write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, "rfmml-infer") == []  # no start time: ours are never stale
    assert remove_stale_temporaries(tmp_path / "missing", "rfmml-infer") == []


def test_another_hosts_temporaries_are_never_removed(tmp_path: Path, monkeypatch) -> None:
    """Workers of several hosts write into one shared folder: a pid says nothing about another host."""
    monkeypatch.setattr(socket, "gethostname", lambda: "node-1")
    dead, me = _dead_pid(), os.getpid()
    started = time.time()
    foreign = [
        f".map.tif.rfmml-infer.node-2.{dead}-1.tmp",  # its pid is not alive here, but may be there
        f".map.tif.rfmml-infer.node-2.{dead}-1.tmp.aux.xml",
        f".map.csv.rfmml-infer.node-2.{me}-1.tmp",  # this pid there is not this process
        f".map.png.rfmml-infer.node-10.{dead}-1.tmp",  # a host named like ours, longer
        f".map.png.rfmml-infer.node.{dead}-1.tmp",  # and shorter
        f".map.png.rfmml-infer.NODE-1.{dead}-1.tmp",  # names are compared exactly
        f".a.b.rfmml-infer.7.{dead}-1.tmp",  # a host that is a number
    ]
    ours = [f".map.tif.rfmml-infer.node-1.{dead}-2.tmp", f".old.csv.rfmml-infer.node-1.{me}-3.tmp"]
    for name in foreign + ours:
        (tmp_path / name).write_bytes(b"x")
    os.utime(tmp_path / foreign[2], (started - 60, started - 60))
    os.utime(tmp_path / ours[1], (started - 60, started - 60))

    assert sorted(p.name for p in remove_stale_temporaries(tmp_path, "rfmml-infer", started)) == ours
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(foreign)
    monkeypatch.setattr(socket, "gethostname", lambda: "node-2")  # node-2's next writer cleans its own
    removed = remove_stale_temporaries(tmp_path, "rfmml-infer", started)
    assert sorted(p.name for p in removed) == sorted(foreign[:3])


@pytest.mark.parametrize(
    ("hostname", "token"),
    [
        ("node-7", "node-7"),
        ("worker_03", "worker_03"),
        ("n7.cluster.example.org", "n7_cluster_example_org-a6f1422e"),  # CRC-32 of the full name
        ("a.b", "a_b-1eef715d"),  # not "a_b": that is another host's name
        ("a_b", "a_b"),
        ("b\u00fcro pc/1", "b_ro_pc_1-1773fe65"),
        ("", "-00000000"),  # never empty
        ("h" * 64, "h" * 64),
        ("h" * 65, "h" * 55 + "-950336de"),  # at most 64 characters
        ("x" * 300, "x" * 55 + "-1b432d13"),
    ],
)
def test_the_host_in_a_name_is_a_safe_token_that_still_parses(
    tmp_path: Path, monkeypatch, hostname: str, token: str
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: hostname)
    assert host_token() == token
    first = temporary_for(tmp_path / "map.tif", "rfmml-infer")
    second = temporary_for(tmp_path / "map.tif", "rfmml-infer")
    match = re.fullmatch(
        rf"\.map\.tif\.rfmml-infer\.{re.escape(token)}\.{os.getpid()}-(\d+)\.tmp", first.name
    )
    assert match is not None and second.name == first.name.replace(
        f"-{match[1]}.tmp", f"-{int(match[1]) + 1}.tmp"
    )
    # parsed back as this host's and this process's: removed once it predates this writer's start
    for path in (first, second, second.with_name(second.name + ".aux.xml")):
        path.write_bytes(b"x")
        os.utime(path, (1, 1))
    removed = remove_stale_temporaries(tmp_path, "rfmml-infer", started=2)
    assert sorted(p.name for p in removed) == sorted([first.name, second.name, second.name + ".aux.xml"])
    assert list(tmp_path.iterdir()) == []


def test_process_alive() -> None:
    assert process_alive(os.getpid()) and process_alive(os.getppid())
    assert not process_alive(_dead_pid())
    assert not process_alive(0) and not process_alive(-1) and not process_alive(2**80)


KILLED_WRITER = """
import sys, time
from rfmml.runtime.atomic_files import atomic_write

def hang(tmp):
    tmp.write_bytes(b"half")
    print("writing", flush=True)
    time.sleep(600)

atomic_write(sys.argv[1], hang, tag="rfmml-test")
"""


def test_a_killed_writer_leaves_the_old_file_and_the_next_writer_removes_its_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "eval.json"
    atomic_write_bytes(target, b"old", tag="rfmml-test")
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == "writing"
        (leftover,) = [p.name for p in tmp_path.iterdir() if p != target]
        assert remove_stale_temporaries(tmp_path, "rfmml-test") == []  # alive: never touched
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    assert leftover == f".eval.json.rfmml-test.{host_token()}.{victim.pid}-1.tmp"
    assert target.read_bytes() == b"old"
    assert [p.name for p in remove_stale_temporaries(tmp_path, "rfmml-test")] == [leftover]
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
