"""The one read-ahead mechanism of folders and scenes: order, bounded depth, errors, early stop."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from rfmml.runtime.prefetch import read_ahead


def test_items_in_order_and_at_most_depth_ahead():
    produced: list[int] = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    seen = []
    for item in read_ahead(items(), depth=2):
        time.sleep(0.005)  # let the worker run ahead as far as it may
        # queued (2) + the one the worker holds while blocked on the full queue (1)
        assert len(produced) - len(seen) <= 2 + 2
        seen.append(item)
    assert seen == list(range(20))


def test_producer_error_is_raised_in_the_consumer_after_the_good_items():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(items(), depth=1):
            seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_worker_and_closes_the_producer():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    before = threading.active_count()
    with closing(read_ahead(endless(), depth=3, name="rfmml-test-reader")) as ahead:
        for item in ahead:
            if item == 5:
                break
    assert closed.wait(5)
    assert threading.active_count() == before
    assert not any(t.name == "rfmml-test-reader" for t in threading.enumerate())


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        next(read_ahead([1], depth=0))
