"""The transaction every change to a SQL store runs in, and how its database errors reach callers."""

from __future__ import annotations

from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING

from cim.errors import CimError, Conflict, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from cim.store.sqlstore import SqlStore


class ChangeGuard(AbstractContextManager[None]):
    """One transaction; a database error inside becomes a :class:`StoreError` after the rollback."""

    def __init__(self, store: SqlStore, what: str) -> None:
        self._store = store
        self._what = what
        self._transaction: AbstractContextManager[None] | None = None

    def __enter__(self) -> None:
        self._transaction = self._store._transaction()
        self._transaction.__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._transaction is not None
        try:
            self._transaction.__exit__(exc_type, exc, tb)  # rolls back when exc is set
        except Exception as ending:  # the commit failed, or the rollback of a connection that died
            if exc is None:
                exc = ending
        if exc is not None and not isinstance(exc, CimError) and isinstance(exc, Exception):
            if self._store._is_conflict(exc):
                raise Conflict(
                    self._what,
                    f"another writer changed the same rows meanwhile ({_first_line(exc)}); nothing was "
                    "written: read again and retry",
                ) from exc
            if self._store._is_unavailable(exc):
                raise StoreUnavailable(
                    f"{self._what} in the store", f"the database went away ({_first_line(exc)}); nothing was written"
                ) from exc
            raise StoreError(
                f"{self._what} in {self._store.url}", f"{type(exc).__name__}: {_first_line(exc)}; nothing was written"
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
