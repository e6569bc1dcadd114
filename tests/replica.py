"""A streaming replica of the test PostgreSQL (localhost:5432), made with ``pg_basebackup -R`` into a folder of the
``postgres`` user and started on a free port: the read replica ``CIM_STORE_READ_URL`` names in the tests."""

from __future__ import annotations

import shutil
import subprocess
import time

import psycopg

from tests.faults import PG_BIN, PostgresFolder


class Replica(PostgresFolder):
    """A hot standby of the cluster at ``primary_port``; :meth:`stop` (a fast shutdown: its clients are cut off, as
    when a replica host goes away) and :meth:`start` take it away and back."""

    command_timeout = 180  # the base backup copies the whole shared cluster

    def __init__(self, primary_port: int = 5432) -> None:
        super().__init__("cim-replica-")
        self._as_postgres(
            PG_BIN / "pg_basebackup",
            *("-h", "127.0.0.1", "-p", primary_port, "-U", "postgres", "-D", self.data),
            *("-R", "-X", "stream", "-c", "fast", "--no-sync"),
        )
        # Debian keeps a cluster's configuration in /etc: the copy has none, so it gets its own (trust, like the
        # primary's test set-up; max_connections left at the default: a standby needs at least the primary's)
        (self.data / "postgresql.conf").write_text(
            f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.folder}'\n"
            "hot_standby = on\nfsync = off\nshared_buffers = 32MB\njit = off\n"
        )
        (self.data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        (self.data / "pg_ident.conf").write_text("")
        for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
            shutil.chown(self.data / name, "postgres", "postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        try:
            self._as_postgres(
                PG_BIN / "pg_ctl", "-D", self.data, "-l", self.folder / "server.log", "-w", "-t", "60", "start"
            )
        except subprocess.CalledProcessError:
            raise RuntimeError(f"the replica did not start: {self._log()}") from None
        deadline = time.monotonic() + 30
        while True:  # streaming: the primary lists it (a read after a write then arrives within milliseconds)
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2) as con:
                    if con.execute("SELECT status FROM pg_stat_wal_receiver").fetchone() == ("streaming",):
                        return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not stream: {self._log()}")
            time.sleep(0.1)

    def _log(self) -> str:
        log = self.folder / "server.log"
        return log.read_text()[-2000:] if log.exists() else "(no log)"
