"""The project's exceptions: one root, each naming what went wrong and why.

Domain errors know nothing of HTTP or exit codes; the CLI and the web layer map them at the edge.
Every message reads as ``<what> — <why>`` so it can be shown to a user as one line.
"""

from __future__ import annotations

from typing import Any


class CimError(Exception):
    """Root of every error a user may see. ``what`` names the thing (file, field, parameter), ``why`` the problem."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} — {why}")
        self.what = what
        self.why = why

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled as it is (an error raised in a child process reaches the caller whole), without calling
        # __init__ again: subclasses take other arguments, and the default would pass the joined message alone
        return (_unpickled, (type(self), self.args, self.__dict__))


def _unpickled(cls: type[CimError], args: tuple[Any, ...], state: dict[str, Any]) -> CimError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidInput(CimError):
    """Input the caller can fix: a bad value, a malformed file, an unknown name."""


class NotFound(CimError):
    """A named thing (asset, collection, file) does not exist."""


class Conflict(CimError):
    """The thing changed or is in a state that does not allow the request (HTTP 409): a transition not allowed from
    a case's current state (``allowed`` names the ones that are), or a change made meanwhile by someone else."""

    def __init__(self, what: str, why: str, *, allowed: tuple[str, ...] = (), current: dict[str, Any] | None = None):
        super().__init__(what, why)
        self.allowed = allowed
        self.current = current or {}


class NotPermitted(CimError):
    """The caller is known but may not do this (HTTP 403): a unit acting on another unit's case."""


class UpstreamError(CimError):
    """A server this one relies on for an answer (a mounted tileset's, on this machine) did not give it (HTTP 502)."""


class StoreError(CimError):
    """The store refused an operation; nothing of the failed operation was written."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened (server down, file locked, path unusable)."""


class StoreTimeout(StoreUnavailable):
    """A read ran past the store's time limit and was stopped (a busy database, or a query too wide)."""
