"""The store dependency: one request at a time holds the store, and a request cancelled while it waits for the
store's lock never keeps it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from typing import Any, cast

from cim.api.deps import Resources, get_store


def _resources() -> Resources:
    return Resources(settings=cast(Any, None), store=cast(Any, "the store"), tiles=cast(Any, None))


def test_a_free_store_is_taken_and_given_back() -> None:
    resources = _resources()

    async def one_request() -> None:
        held = cast(AsyncGenerator[Any, None], get_store(resources))
        assert await held.__anext__() == "the store"
        assert resources.store_lock.locked()
        await held.aclose()

    asyncio.run(one_request())
    assert not resources.store_lock.locked()


def test_a_waiting_request_gets_the_store_once_it_is_free_and_a_cancelled_one_leaves_it_free() -> None:
    resources = _resources()
    resources.store_lock.acquire()  # another request holds the store

    async def scenario() -> None:
        waiting = cast(AsyncGenerator[Any, None], get_store(resources))
        task = asyncio.ensure_future(waiting.__anext__())
        await asyncio.sleep(0.1)
        assert not task.done()  # it waits (in a thread), the event loop does not
        threading.Timer(0.2, resources.store_lock.release).start()
        assert await task == "the store"
        await waiting.aclose()
        assert not resources.store_lock.locked()

        resources.store_lock.acquire()
        cancelled = get_store(resources)
        task = asyncio.ensure_future(cancelled.__anext__())
        await asyncio.sleep(0.1)
        task.cancel()  # the client went away while it waited
        threading.Timer(0.2, resources.store_lock.release).start()
        try:
            await task
        except asyncio.CancelledError:
            pass
        else:
            raise AssertionError("the waiting request was not cancelled")
        for _ in range(100):  # the store is released at 0.2 s; the cancelled request's thread takes it, gives it back
            await asyncio.sleep(0.01)
            if not resources.store_lock.locked():
                break

    asyncio.run(scenario())
    assert not resources.store_lock.locked()  # the cancelled request took the lock in its thread, then gave it back
