"""Scene archives on a Dask cluster (issue 13): a LocalCluster of 2 worker processes (1 thread each)
classifies 3 small scenes plus a corrupt one. The class maps are byte-identical to the serial path's,
the corrupt scene is reported (summary, exit 3 via main()), each worker loads the model once, and a
rerun skips the finished scenes and redoes one whose outputs are incomplete. One cluster for the module."""

from __future__ import annotations

import logging
import os
import shutil
import sys

import numpy as np
import pytest
from archive_fixtures import make_archive

from rfmml.runtime import classify_scenes
from rfmml.runtime.cli import main
from rfmml.runtime.cli_shell import EXIT_PARTIAL, EXIT_USER

distributed = pytest.importorskip("distributed", reason='Dask is not installed (pip install "rfmml[dask]")')
rasterio = pytest.importorskip("rasterio")

OUTPUTS = ("_classmap.tif", "_classmap.tif.aux.xml", "_classmap.csv")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=logging.ERROR) as local:  # fmt: skip
        with distributed.Client(local) as client:
            client.wait_for_workers(2, timeout=120)
            yield local, client


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cluster):
    """The archive, its serial outputs (this process) and its Dask outputs, with both summaries."""
    _, client = cluster
    folder = tmp_path_factory.mktemp("archive")
    archive = make_archive(folder / "in")
    serial = classify_scenes(
        archive.all_scenes, model=archive.model, out_dir=folder / "serial", providers="cpu"
    )
    dask = classify_scenes(archive.all_scenes, model=archive.model, out_dir=folder / "dask", providers="cpu",
                           client=client)  # fmt: skip
    return archive, folder, serial, dask


def test_cluster_maps_are_byte_identical_to_the_serial_path(runs):
    archive, folder, serial, dask = runs
    assert [o.status for o in serial.outcomes] == ["ok", "ok", "ok", "failed"]
    assert [o.status for o in dask.outcomes] == ["ok", "ok", "ok", "failed"]
    for scene, expected in zip(archive.scenes, archive.expected, strict=True):
        for suffix in OUTPUTS:
            name = scene.stem + suffix
            assert (folder / "dask" / name).read_bytes() == (folder / "serial" / name).read_bytes(), name
        with rasterio.open(folder / "dask" / f"{scene.stem}_classmap.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), expected)
    assert [o.tiles for o in dask.outcomes] == [15, 15, 15, 0]


def test_corrupt_scene_is_reported_and_the_others_finish(runs):
    archive, folder, serial, dask = runs
    (failed,) = dask.failed
    assert failed.scene == archive.corrupt and failed.reason == serial.failed[0].reason
    assert "read failed" in failed.reason and dask.exit_code == EXIT_PARTIAL
    lines = dask.lines()
    assert lines[0].startswith("4 scene(s) in the Dask cluster at tcp://")
    assert "(2 workers, 2 threads): 3 classified, 0 skipped (already complete), 1 failed" in lines[0]
    assert lines[-1] == f"  failed {archive.corrupt}: {failed.reason}"
    assert not (folder / "dask" / "corrupt_classmap.done.json").exists()


def test_each_worker_process_loads_the_model_once(runs, cluster):
    from rfmml.runtime.dask_scenes import worker_pids, worker_session_loads

    _, _, _, dask = runs
    _, client = cluster
    pids = set(worker_pids(client).values())
    done = [o for o in dask.outcomes if o.status == "ok"]
    assert {o.pid for o in done} <= pids and os.getpid() not in pids  # the workers did the scenes
    assert [o.process_loads for o in done] == [1, 1, 1]  # a worker's second scene reused its session
    loads = worker_session_loads(client)
    assert sorted(loads.values()) in ([0, 1], [1, 1])
    assert sum(loads.values()) == len({o.pid for o in dask.outcomes})


def test_rerun_via_main_skips_finished_scenes_and_redoes_incomplete_ones(runs, cluster, tmp_path, capsys):
    archive, folder, _, _ = runs
    local, client = cluster
    out = tmp_path / "maps"
    shutil.copytree(folder / "dask", out)
    (out / "scene2_classmap.csv").unlink()  # incomplete: redone
    argv = [
        "--model",
        str(archive.model),
        *map(str, archive.all_scenes),
        "--out",
        str(out),
        "--providers",
        "cpu",
    ]
    code = main([*argv, "--dask", local.scheduler_address])
    printed = capsys.readouterr().out
    assert code == EXIT_PARTIAL
    assert "4 scene(s) in the Dask cluster" in printed
    assert "2 skipped (already complete)" in printed and "1 classified" in printed and "1 failed" in printed
    status = {line.split()[2]: line.split()[1] for line in printed.splitlines() if line.startswith("[")}
    assert status == {
        str(s) + ":": v
        for s, v in zip(archive.all_scenes, ["skipped", "skipped", "ok", "failed"], strict=True)
    }
    assert (out / "scene2_classmap.csv").read_bytes() == (
        folder / "serial" / "scene2_classmap.csv"
    ).read_bytes()
    from rfmml.runtime.dask_scenes import worker_session_loads

    assert max(worker_session_loads(client).values()) == 1  # a second run reused each worker's session


def test_unreachable_scheduler_is_one_line(runs, tmp_path, capsys, monkeypatch):
    from rfmml.runtime import dask_scenes

    archive = runs[0]
    monkeypatch.setattr(dask_scenes, "CONNECT_TIMEOUT", "2s")
    code = main(["--model", str(archive.model), str(archive.scenes[0]), "--out", str(tmp_path / "m"),
                 "--dask", "tcp://127.0.0.1:9"])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == EXIT_USER and len(err) == 1, err
    assert err[0].startswith("rfmml-infer: error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'")


class CrashOn(distributed.WorkerPlugin):
    """Make a worker process exit at once when it starts classifying a scene called ``name``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def setup(self, worker) -> None:
        from rfmml.runtime.classifier import Classifier

        real, name = Classifier.classify_scene, self.name

        def crashing(clf, path, **options):
            if path.name == name:
                os._exit(1)
            return real(clf, path, **options)

        Classifier.classify_scene = crashing


def test_a_worker_that_dies_fails_its_scene_and_the_others_finish(tmp_path):
    import cloudpickle
    import dask

    archive = make_archive(tmp_path / "in")
    crash = shutil.copy(archive.scenes[0], tmp_path / "in" / "crash.tif")
    settings = {"providers": "cpu", "model": archive.model, "out_dir": tmp_path / "out"}
    one_worker = {"n_workers": 1, "processes": True, "threads_per_worker": 1, "dashboard_address": None}
    # Dask retries a task whose worker died (on the restarted worker process) up to allowed-failures
    # times; worker-saturation 1.0 sends a worker one task at a time, so the crash takes no queued
    # scene down with it (with Dask's default, 1.1, a 1-thread worker holds two).
    config = {"distributed.scheduler.allowed-failures": 1, "distributed.scheduler.worker-saturation": 1.0}
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this module
    try:
        with (
            dask.config.set(config),
            distributed.LocalCluster(**one_worker, silence_logs=logging.CRITICAL) as local,
        ):
            with distributed.Client(local) as client:
                client.register_plugin(CrashOn("crash.tif"))  # every worker process, restarted ones too
                summary = classify_scenes([crash, *archive.scenes], client=client, **settings)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert [o.status for o in summary.outcomes] == ["failed", "ok", "ok", "ok"]
    assert summary.failed[0].reason.startswith("task failed on the cluster: KilledWorker")
    assert summary.exit_code == EXIT_PARTIAL
