"""The IoT write-ahead spool: readings made durable on local disk before they are acknowledged.

A reading answered 202 on ``POST /iot/readings`` or acknowledged (PUBACK) over MQTT QoS 1 is first committed here —
an SQLite database in WAL mode beside the store (``<store>.spool.sqlite``, or ``CIM_IOT_SPOOL``) — and deleted only
after the store has committed it. At start the service replays what the spool still holds, so a database outage or
a crash of the server (kill -9) loses no acknowledged reading.

Delivery to the store is **at least once**: a crash between the store's commit and the spool's delete replays that
batch (the latest state is unchanged: same time, same value). The PostgreSQL store keeps one reading per sensor and
time, so there it is stored once (as is a QoS-1 message the broker hands over again); in DuckDB's history such a
batch appears twice.

>>> import tempfile, os
>>> from datetime import UTC, datetime
>>> path = os.path.join(tempfile.mkdtemp(), "s.spool.sqlite")
>>> spool = Spool(path)
>>> upto = spool.append([Reading(sensor_id="s1", time=datetime(2026, 1, 1, tzinfo=UTC), value=1.5)])
>>> spool.close(); spool = Spool(path)
>>> [r.value for r in spool.load()[0]], spool.depth()
([1.5], 1)
>>> spool.delete_upto(upto); spool.depth()
0
>>> spool.close()
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from cim.errors import StoreUnavailable
from cim.model import Reading

#: ``synchronous`` of the spool: FULL syncs the WAL at every commit, so an acknowledged reading survives a power
#: cut as well as a crash of the process (NORMAL survives a crash of the process only).
DEFAULT_SYNCHRONOUS = "FULL"
_SECRET = re.compile(r"(://[^:/@\s]*:)[^@\s]*@|(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the passwords of URLs and libpq strings masked, for logs and stats.

    >>> redact("mqtt://cim:s3cret@broker:1883 and host=db password=x1 user=u")
    'mqtt://cim:***@broker:1883 and host=db password=*** user=u'
    """
    return _SECRET.sub(lambda m: f"{m.group(1)}***@" if m.group(1) else f"{m.group(2)}***", text)


def spool_path_for(store_url: str, data_dir: Path = Path("data"), *, client_id: str | None = None) -> Path:
    """Where the spool of a store lives by default: beside a DuckDB file, else under ``data_dir``. ``client_id``:
    the MQTT client id of a server that shares its subscription with others on one PostgreSQL store — each such
    server has a spool of its own (and replays only its own at start), named after its id.

    >>> spool_path_for("data/city.duckdb").as_posix()
    'data/city.duckdb.spool.sqlite'
    >>> spool_path_for("postgresql://u@db:5432/cim?schema=shanghai").as_posix()
    'data/iot-db-5432-cim-shanghai.spool.sqlite'
    >>> spool_path_for("postgresql://u@db:5432/cim?schema=shanghai", client_id="cim-ops-1-8001-77e9975a").as_posix()
    'data/iot-db-5432-cim-shanghai-cim-ops-1-8001-77e9975a.spool.sqlite'
    """
    if "://" not in store_url or store_url.startswith("duckdb://"):
        return Path(store_url.removeprefix("duckdb://") + ".spool.sqlite")
    tail = store_url.split("://", 1)[1].rsplit("@", 1)[-1]  # never the credentials
    if client_id:
        tail += "-" + client_id
    return data_dir / ("iot-" + re.sub(r"[^A-Za-z0-9]+", "-", tail.replace("schema=", "")).strip("-") + ".spool.sqlite")


class Spool:
    """Readings not yet in the store, in SQLite (WAL). Used from one thread (the event loop's)."""

    def __init__(self, path: str | Path, *, synchronous: str = DEFAULT_SYNCHRONOUS) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute(f"PRAGMA synchronous={synchronous}")
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "sensor_id TEXT NOT NULL, time TEXT NOT NULL, value REAL, status TEXT)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"IoT spool {self.path}", f"cannot be opened: {exc}") from None
        self._depth = self._count()

    def _count(self) -> int:
        return int(self._con.execute("SELECT count(*) FROM readings").fetchone()[0])

    def append(self, readings: Sequence[Reading]) -> int:
        """Commit ``readings`` in one transaction; the spool id of the last one (ids only grow)."""
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany(
                    "INSERT INTO readings (sensor_id, time, value, status) VALUES (?, ?, ?, ?)",
                    [(r.sensor_id, r.time.isoformat(), r.value, r.status) for r in readings],
                )
                last = int(con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()[0])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"IoT spool {self.path}", f"cannot write {len(readings)} readings: {exc}") from None
        self._depth += len(readings)
        return last

    def load(self) -> tuple[list[Reading], int]:
        """What the spool holds, oldest first, and the id of the last one (0 when empty)."""
        rows = self._con.execute("SELECT id, sensor_id, time, value, status FROM readings ORDER BY id").fetchall()
        readings = [
            Reading(sensor_id=sid, time=datetime.fromisoformat(t), value=value, status=status)
            for _, sid, t, value, status in rows
        ]
        return readings, (rows[-1][0] if rows else 0)

    def delete_upto(self, last_id: int) -> None:
        """Forget the readings up to ``last_id``: the store has committed them."""
        try:
            deleted = self._con.execute("DELETE FROM readings WHERE id <= ?", [last_id]).rowcount
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"IoT spool {self.path}", f"cannot delete stored readings: {exc}") from None
        self._depth = max(self._depth - max(deleted, 0), 0)

    def depth(self) -> int:
        """Readings held (not yet committed to the store)."""
        return self._depth

    def close(self) -> None:
        self._con.close()
