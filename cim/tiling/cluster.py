"""Where a build's tiles are encoded: a Dask distributed cluster, reached at an address (``cim build --cluster
tcp://scheduler:8786``, ``CIM_DASK_CLUSTER``) or started here as a :class:`distributed.LocalCluster` of one
single-threaded worker process per CPU.

A local cluster starts in a background thread while the build plans (its workers import the encoder then), so the
start costs the build little; :meth:`ClusterStart.client` waits for it. A cluster that cannot be reached is an
:class:`~cim.errors.InvalidInput` naming ``--cluster`` after :data:`CONNECT_TIMEOUT_S`, never a hang.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from cim.errors import InvalidInput

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

#: Seconds to reach a cluster's scheduler before the build gives up on it.
CONNECT_TIMEOUT_S = 8
#: How often the scheduler reruns a task that raised (a worker that dies has its tasks rerun regardless, up to
#: distributed's ``allowed-failures``): a task writes the same bytes each time it runs.
TASK_RETRIES = 2


class ClusterStart:
    """A cluster being reached (``address``) or started (``address`` None: ``workers`` local processes), in a
    background thread; :meth:`client` waits for it, :meth:`close` stops what this build started."""

    def __init__(self, address: str | None, workers: int) -> None:
        self.address = address
        self._local: LocalCluster | None = None
        self._client: Client | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="cim-cluster")
        self._started: Future[Client] = self._thread.submit(self._start, workers)

    def _start(self, workers: int) -> Client:
        from distributed import Client, LocalCluster

        if self.address is None:
            self._local = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                # the scheduler's health routes on a free port, not 8787 (taken by another build or cluster)
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            )
            client = Client(self._local)
        else:
            client = Client(self.address, timeout=CONNECT_TIMEOUT_S)
        client.run(_import_encoder)  # every worker imports the encoder now, not in its first task
        return client

    def client(self) -> Client:
        """The connected client; a cluster that cannot be reached or started is an :class:`InvalidInput`."""
        try:
            self._client = self._started.result()
        except (OSError, TimeoutError, ValueError) as exc:
            where = f"--cluster {self.address}" if self.address else "local Dask cluster"
            why = (
                f"no Dask scheduler answered within {CONNECT_TIMEOUT_S} s ({type(exc).__name__}); give the"
                " scheduler's address, e.g. tcp://scheduler:8786"
                if self.address
                else f"could not be started ({type(exc).__name__}: {exc})"
            )
            raise InvalidInput(where, why) from None
        return self._client

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this build started one (waits for a start under way)."""
        try:
            client = self._started.result()
        except Exception:
            client = None
        if client is not None:
            client.close()
        if self._local is not None:
            self._local.close()
        self._thread.shutdown(wait=True)


def encoding_threads(client: Client) -> int:
    """How many tasks the cluster runs at once (its workers' threads)."""
    return max(1, sum(client.nthreads().values()))


def _import_encoder() -> None:
    """Worker: import the encoder (numpy, pyarrow, meshopt, duckdb), which the first task would pay for."""
    import cim.tiling.encode  # noqa: F401
