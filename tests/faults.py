"""Private PostgreSQL, Mosquitto and ``cim serve`` processes that a fault test may stop, restart and kill.

The shared PostgreSQL on 5432 and Mosquitto on 1883 serve everybody's tests at once: a fault test never touches them.
Each helper here starts its own instance on a free port in a temporary folder, and stops it by its own pid.

    from tests.faults import private_postgres, private_mosquitto   # fixtures: import them into the test module

    def test_requests_recover_after_a_database_restart(private_postgres: PrivatePostgres) -> None:
        url = private_postgres.store_url("t1")       # postgresql://postgres@127.0.0.1:PORT/postgres?schema=t1
        ...
        private_postgres.restart()                   # pg_ctl stop -m fast, then start again (same port, same data)

PostgreSQL runs as the user ``postgres`` (initdb refuses root): its folder is made outside pytest's private tmp
folders (they are 0700, owned by root) and handed to that user. The PostGIS extension is installed system-wide.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from tests.conftest import missing_service

PG_BIN = Path(os.environ.get("CIM_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for_port(port: int, *, timeout: float, alive: subprocess.Popen[bytes] | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not port_answers(port):
        if (alive is not None and alive.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{what or 'process'} on port {port} did not start")
        time.sleep(0.05)


def stop_pid(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: one process, by its pid."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class PostgresFolder:
    """A PostgreSQL data folder of the ``postgres`` user in a temporary folder, for a server on a free port:
    what a private cluster and a replica (tests/replica.py) share — commands run as that user, a fast stop, and
    the folder removed with the server stopped by the pid it wrote."""

    #: Seconds a command (initdb, pg_basebackup, pg_ctl) may take.
    command_timeout = 120

    def __init__(self, prefix: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix))
        self.folder.chmod(0o755)
        self.data = self.folder / "data"
        self.port = free_port()
        shutil.chown(self.folder, "postgres", "postgres")

    def _as_postgres(self, *command: object) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, command)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=self.command_timeout,
        )

    def stop(self) -> None:
        """A fast shutdown (clients are cut off, as when the database is restarted under them)."""
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # our postmaster, by the pid it wrote
            try:
                self.stop()
            except subprocess.SubprocessError:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePostgres(PostgresFolder):
    """A PostgreSQL cluster of the test's own (initdb, pg_ctl), trust authentication on 127.0.0.1:``port``."""

    def __init__(self) -> None:
        super().__init__("cim-pg-")
        self._as_postgres(
            PG_BIN / "initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.folder}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n"
                "max_connections = 50\njit = off\n"
            )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def store_url(self, schema: str) -> str:
        return f"{self.url}?schema={schema}"

    def start(self) -> None:
        self._as_postgres(
            PG_BIN / "pg_ctl", "-D", self.data, "-l", self.folder / "server.log", "-w", "-t", "60", "start"
        )

    def restart(self) -> None:
        self.stop()
        self.start()


class PrivateMosquitto:
    """A Mosquitto of the test's own with Debian's stock settings (``persistence true``, the default
    ``max_queued_messages 1000``) unless ``extra`` lines say otherwise."""

    def __init__(self, folder: Path, *, extra: str = "") -> None:
        self.folder = folder
        self.port = free_port()
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nlog_dest file {folder}/mosquitto.log\n{extra}"
            + (
                "user root\n" if os.geteuid() == 0 else ""
            )  # as root it would switch to mosquitto, who cannot write here
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(["mosquitto", "-c", str(self.config)], stdout=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=10, alive=self.process, what="mosquitto")

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file (sessions and queued QoS-1 messages) and exits."""
        if self.process is not None:
            stop_pid(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


_Broker = TypeVar("_Broker", bound=PrivateMosquitto)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        missing_service(f"PostgreSQL binaries are not in {PG_BIN} (apt-get install postgresql-15-postgis-3)")
    try:
        server = PrivatePostgres()
        server.start()
    except (subprocess.SubprocessError, KeyError, LookupError, PermissionError) as exc:
        missing_service(f"cannot start a private PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@contextmanager
def running_mosquitto(tmp_path: Path, make: Callable[[Path], _Broker]) -> Iterator[_Broker]:
    """``make(folder)``'s broker started in a folder of ``tmp_path``, stopped after the block (skipped, or failed in
    CI, where Mosquitto is not installed)."""
    if shutil.which("mosquitto") is None:
        missing_service("the mosquitto broker is not installed (apt-get install mosquitto)")
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    broker = make(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def private_mosquitto(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    with running_mosquitto(tmp_path, PrivateMosquitto) as broker:
        yield broker


class ServerProcess:
    """``cim serve`` in a child process (``python -m cim serve``), stopped or killed by its pid."""

    def __init__(self, *, store: str, tiles: Path, mqtt: str | None, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.command = [
            sys.executable, "-m", "cim", "serve", "--store", store, "--tiles", str(tiles), "--port", str(self.port),
        ]  # fmt: skip
        if mqtt:
            self.command += ["--mqtt", mqtt]
        self.env = {**os.environ, **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, timeout=timeout, alive=self.process, what="cim serve")

    def kill(self) -> None:
        """SIGKILL: no flush, no clean disconnect — a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            stop_pid(self.process, timeout=20)
        self.process = None
