"""Scenes fanned out over a Dask cluster (``pip install "rfmml[dask]"``): the only module that imports
Dask, and only when called.

Each scene is one task, :func:`rfmml.runtime.scene_job.process_scene` on a worker: the worker process
loads the model once (:func:`rfmml.runtime.scene_job.job_classifier`, a per-process cache keyed by the
model and head paths and digests, the head kind and the session settings) and reuses it for every
later scene, writes the scene's outputs itself (all or nothing, then the record), and returns a small
:class:`SceneOutcome` (no pixels travel back). The client collects the outcomes as they finish. A scene
whose worker died (``KilledWorker`` after Dask's own retries) or whose task raised is a failed outcome,
and the other scenes go on; Ctrl-C on the client cancels the tasks not yet finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rfmml.runtime.cli_shell import debug_enabled, one_line
from rfmml.runtime.errors import InputError
from rfmml.runtime.scene_job import FAILED, ArchiveJob, SceneOutcome, process_scene, session_loads

INSTALL_HINT = 'pip install "rfmml[dask]"'
CONNECT_TIMEOUT = "30s"


def import_distributed() -> Any:
    """The ``distributed`` package, or InputError (one line) naming the extra that installs it."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"--dask needs Dask's distributed scheduler: {INSTALL_HINT}") from None
    return distributed


def connect(address: str) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` (e.g. ``tcp://10.0.0.5:8786``);
    InputError (one line) when it cannot be reached within :data:`CONNECT_TIMEOUT`."""
    distributed = import_distributed()
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as error:
        reason = one_line(str(error)) or type(error).__name__
        raise InputError(f"cannot reach the Dask scheduler at {address!r}: {reason}") from None


def where(client: Any) -> str:
    """``the Dask cluster at tcp://...:8786 (2 workers, 2 threads)``, for the summary."""
    threads = client.nthreads()
    workers = f"{len(threads)} workers, {sum(threads.values())} threads"
    return f"the Dask cluster at {client.scheduler.address} ({workers})"


def _lost(scene: Path, error: BaseException) -> SceneOutcome:
    reason = f"{type(error).__name__}: {one_line(str(error))}".rstrip(": ")
    return SceneOutcome(scene, FAILED, reason=f"task failed on the cluster: {reason}")


def run_on_cluster(
    client: Any,
    job: ArchiveJob,
    scenes: list[Path],
    report: Callable[[SceneOutcome, int, int], None] | None = None,
) -> list[SceneOutcome]:
    """Run every scene of ``job`` on ``client``'s workers; outcomes in the order of ``scenes``.
    ``report(outcome, n_done, n_total)`` as each finishes (in finishing order)."""
    distributed = import_distributed()
    futures = client.map(process_scene, scenes, job=job, pure=False)
    position = {future.key: index for index, future in enumerate(futures)}
    outcomes: list[SceneOutcome | None] = [None] * len(scenes)
    try:
        for done, future in enumerate(distributed.as_completed(futures), 1):
            index = position[future.key]
            try:
                outcome = future.result()
            except Exception as error:  # KilledWorker, a task that raised: this scene failed
                if debug_enabled():
                    raise
                outcome = _lost(scenes[index], error)
            outcomes[index] = outcome
            if report is not None:
                report(outcome, done, len(scenes))
    finally:
        client.cancel([future for future in futures if not future.done()])
    return [outcome for outcome in outcomes if outcome is not None]


def worker_session_loads(client: Any) -> dict[str, int]:
    """Model loads per worker process (``{worker address: loads}``): 1 each after any number of scenes
    of one run, the check that a worker reuses its session."""
    return client.run(session_loads)


def worker_pids(client: Any) -> dict[str, int]:
    """``{worker address: process id}``."""
    return client.run(os.getpid)
