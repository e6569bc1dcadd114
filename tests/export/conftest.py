"""What the export tests share: an export killed mid-write, in a process of its own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

#: An export whose progress callback kills its own process (SIGKILL: no ``finally`` runs) at the first report, so
#: after something was written and before the rename.
_KILLED = (
    "import os, signal, sys\n"
    "from pathlib import Path\n"
    "from cim.export import writer\n"
    "from cim.store import open_store\n"
    "with open_store(sys.argv[1]) as store:\n"
    "    writer(sys.argv[2])(store, None, Path(sys.argv[3]), progress=lambda n: os.kill(os.getpid(), signal.SIGKILL))\n"
)

KillMidWrite = Callable[[str, str, Path], None]


@pytest.fixture
def kill_mid_write() -> KillMidWrite:
    """``kill_mid_write(store_url, format, out)`` runs the export of ``format`` to ``out`` in a child process killed
    mid-write, then checks that nothing is at ``out`` and that all it left beside it is hidden partial files."""

    def run(store_url: str, format_name: str, out: Path) -> None:
        before = set(out.parent.iterdir())
        done = subprocess.run(
            [sys.executable, "-c", _KILLED, store_url, format_name, str(out)], capture_output=True, timeout=60
        )
        assert done.returncode == -9, done.stderr.decode()[-2000:]
        assert not out.exists()
        left = sorted(p.name for p in set(out.parent.iterdir()) - before)
        assert all(name.startswith(".") and ".partial" in name for name in left), left

    return run
