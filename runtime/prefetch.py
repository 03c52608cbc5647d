"""Read ahead: run a producer (an iterator of batches) in a worker thread, ``depth`` items ahead.

One mechanism for tile folders and scenes: the producer decodes/reads the next batches while the
calling thread runs the model on the current one, so the model never waits on the disk, and memory
stays bounded by ``depth`` batches (the queue) plus the one being built and the one being used.

    for batch in read_ahead(make_batches(), depth=2):
        model(batch)

An exception in the producer is raised in the consumer at the point where its item would have come.
Leaving the loop early (break, an exception in the consumer) stops the worker: it is told to stop,
drains nothing more, and is joined before ``read_ahead`` returns.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.1  # how often a blocked worker checks whether the consumer has gone

_DONE = object()


class _Failure:
    """An exception raised by the producer, carried across the queue."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _produce(items: Iterable[T], out: queue.Queue, stop: threading.Event) -> None:
    """Worker body: put every item of ``items`` on ``out`` (then _DONE), unless told to stop."""

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    iterator = iter(items)
    try:
        for item in iterator:
            if not put(item):
                return
        put(_DONE)
    except BaseException as error:  # handed to the consumer, which re-raises it
        put(_Failure(error))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:  # a generator: run its cleanup (e.g. shut its thread pool) in this thread
            close()


def read_ahead(items: Iterable[T], depth: int = 2, name: str = "rfmml-read-ahead") -> Iterator[T]:
    """Yield the items of ``items`` in order, produced by a worker thread at most ``depth`` ahead."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    worker = threading.Thread(target=_produce, args=(items, out, stop), name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()
