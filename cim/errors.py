"""The project's exceptions: one root, each naming what went wrong and why.

Domain errors know nothing of HTTP or exit codes; the CLI and the web layer map them at the edge.
Every message reads as ``<what> — <why>`` so it can be shown to a user as one line.
"""

from __future__ import annotations


class CimError(Exception):
    """Root of every error a user may see. ``what`` names the thing (file, field, parameter), ``why`` the problem."""

    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what} — {why}")
        self.what = what
        self.why = why

    def __reduce__(self) -> tuple[type[CimError], tuple[str, str]]:
        # pickled as its two parts (an error raised in a child process reaches the caller whole); the default
        # would call __init__ with the joined message alone
        return (type(self), (self.what, self.why))


class InvalidInput(CimError):
    """Input the caller can fix: a bad value, a malformed file, an unknown name."""


class NotFound(CimError):
    """A named thing (asset, collection, file) does not exist."""


class StoreError(CimError):
    """The store refused an operation; nothing of the failed operation was written."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened (server down, file locked, path unusable)."""
