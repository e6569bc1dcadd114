"""The DuckDB store's read watchdog: one thread that interrupts reads running past the store's time limit."""

from __future__ import annotations

import threading
import time

import duckdb


class Watchdog:
    """Interrupts reads that run past ``limit`` seconds: one thread for the store, woken once a second while reads
    are under way, instead of a timer per read (a read costs two dict operations here)."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._started: dict[int, tuple[duckdb.DuckDBPyConnection, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def watch(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._started[id(cursor)] = (cursor, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cim-duckdb-watchdog", daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, cursor: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._started.pop(id(cursor), None)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait()
            time.sleep(min(1.0, self.limit))
            now = time.monotonic()
            with self._lock:  # under the lock: a cursor forgotten meanwhile may already serve another read
                for cursor, started in self._started.values():
                    if now - started > self.limit:
                        cursor.interrupt()
                if not self._started:
                    self._wake.clear()
