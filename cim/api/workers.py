"""Which of the ``N`` worker processes of one ``cim serve --workers N`` this process is: a slot 0…N-1.

uvicorn's supervisor starts the workers alike and tells them nothing of their place, yet each needs a name that stays
the same when it is made again after a crash: its MQTT session (client id) and its readings spool are named after
it, so a restarted worker resumes the session the broker kept and replays its own spool (:mod:`cim.iot.mqtt`).
A worker takes the first free slot by locking a file (``flock``) and holds the lock as long as it lives; the
kernel releases it when the process ends however it ends, so the worker made in its place takes the same slot.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO

from cim.errors import StoreUnavailable

#: Seconds a worker waits for a free slot (a crashed worker's lock goes when the kernel has reaped it).
CLAIM_WAIT_S = 10.0
_held: list[IO[bytes]] = []  # the slot files this process holds locked: closed only when it ends


def claim_worker_slot(server: str, count: int, *, folder: Path | None = None) -> int:
    """The first of ``count`` slots of ``server`` (a name unique to one ``cim serve``: its MQTT client id) that no
    other live process holds; held until this process ends.

    >>> import tempfile
    >>> claim_worker_slot("doc-server", 2, folder=Path(tempfile.mkdtemp()))
    0
    """
    where = folder or Path(tempfile.gettempdir())
    digest = hashlib.sha256(server.encode()).hexdigest()[:16]
    deadline = time.monotonic() + CLAIM_WAIT_S
    while True:
        for slot in range(count):
            handle = open(where / f"cim-worker-{digest}-{slot}.lock", "ab")  # noqa: SIM115 - held for life
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            os.set_inheritable(handle.fileno(), False)
            _held.append(handle)
            return slot
        if time.monotonic() > deadline:
            raise StoreUnavailable(
                f"a worker slot of {count}", f"all are held by live processes after {CLAIM_WAIT_S:g} s"
            )
        time.sleep(0.1)
