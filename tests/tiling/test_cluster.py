"""Builds on a real Dask distributed cluster: a scheduler and two workers started here as separate processes (``dask
scheduler``, ``dask worker``), on free ports, stopped after the module. The workers read the meshes from the mesh
file themselves and write into the build's folder."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.cli import main
from cim.errors import InvalidInput
from cim.store import open_store
from cim.store.meshes import MeshStore, mesh_path_for
from cim.tiling.build import BuildSummary, build_tiles
from cim.tiling.quadtree import TreeLimits
from tests.tiling.conftest import small_city, write_city

ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")
LIMITS = TreeLimits(max_features=8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A scheduler and its workers, each its own process; ``workers`` maps a worker's address to its process."""

    def __init__(self, workers: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        port = self.address.rsplit(":", 1)[1]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
        self.scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], **quiet
        )
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        for _ in range(workers):
            worker_port = _free_port()
            self.workers[f"tcp://127.0.0.1:{worker_port}"] = subprocess.Popen(
                [str(DASK), "worker", self.address, "--host", "127.0.0.1", "--worker-port", str(worker_port),
                 "--nthreads", "1", "--no-nanny", "--no-dashboard"], **quiet,
            )  # fmt: skip

    def wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(count, timeout=60)

    def stop(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            process.terminate()
        for process in [*self.workers.values(), self.scheduler]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster(workers=2)
    try:
        started.wait_for_workers(2)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def city_and_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A city of 400 buildings and the hash of every file an undisturbed build in this process writes of it."""
    folder = tmp_path_factory.mktemp("cluster-city")
    path = folder / "city.duckdb"
    write_city(path, *small_city(400))
    summary = _build(path, folder / "alone" / "city", workers=1)
    assert summary.written > 40
    return path, _hashes(folder / "alone" / "city")


def _build(store_path: Path, out: Path, **options: object) -> BuildSummary:
    with open_store(str(store_path)) as store, MeshStore(mesh_path_for(store.url), read_only=True) as meshes:
        return build_tiles(store, meshes, out, limits=LIMITS, **options)  # type: ignore[arg-type]


def _hashes(out: Path) -> dict[str, str]:
    """sha256 of every file of the served version, by path within it."""
    version = out.resolve()
    return {
        str(p.relative_to(version)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(version.rglob("*"))
        if p.is_file()
    }


def test_a_build_on_a_cluster_writes_the_same_bytes_as_one_in_this_process(
    cluster: Cluster, city_and_reference: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    city, reference = city_and_reference
    seen: list[tuple[int, int]] = []
    summary = _build(city, tmp_path / "city", cluster=cluster.address, progress=lambda d, t: seen.append((d, t)))
    assert _hashes(tmp_path / "city") == reference
    assert seen[-1] == (summary.written, summary.written) and len(seen) > 2  # ticks as tasks complete


def test_an_unreachable_cluster_is_a_clear_error_naming_the_option(
    city_and_reference: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    city, _ = city_and_reference
    nobody = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["build", "--store", str(city), "--out", str(tmp_path / "x"), "--cluster", nobody])
    assert time.monotonic() - started < 20  # the 8 s connect timeout and the CLI start-up on a loaded machine
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert f"--cluster {nobody}" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    with pytest.raises(InvalidInput, match="--cluster"):
        _build(city, tmp_path / "y", cluster="not a scheduler address")


def test_a_worker_killed_mid_build_has_its_tasks_rerun_and_the_output_is_identical(
    cluster: Cluster, city_and_reference: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """Runs last in the module: it leaves the cluster one worker short."""
    from distributed import Client

    city, reference = city_and_reference
    killed: list[tuple[str, list[str]]] = []
    with Client(cluster.address, timeout=30) as watcher:

        def kill_a_busy_worker(done: int, total: int) -> None:
            if killed or done == 0:
                return
            busy = {address: list(keys) for address, keys in watcher.processing().items() if keys}
            address = next(iter(busy), next(iter(cluster.workers)))
            os.kill(cluster.workers[address].pid, signal.SIGKILL)
            killed.append((address, busy.get(address, [])))

        summary = _build(city, tmp_path / "city", cluster=cluster.address, progress=kill_a_busy_worker)
    address, keys = killed[0]
    assert cluster.workers[address].wait(timeout=10) == -signal.SIGKILL
    assert keys, "the killed worker was running a task"
    assert summary.written == len([p for p in reference if p.endswith(".glb")])
    assert _hashes(tmp_path / "city") == reference  # no part file left, every glb whole and the same
