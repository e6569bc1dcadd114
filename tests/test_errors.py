"""Errors cross process boundaries whole (the IFC reader is a child process)."""

from __future__ import annotations

import pickle

from cim.errors import InvalidInput, StoreUnavailable
from cim.iot.payload import Dropped, DropReason


def test_errors_pickle_with_their_parts_and_their_class() -> None:
    reasons = list(DropReason)
    for error in (
        InvalidInput("file a.ifc", "is truncated"),
        StoreUnavailable("store x", "is busy"),
        Dropped(reasons[0], "payload", "no value"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert (copy.what, copy.why) == (error.what, error.why)
        assert vars(copy) == vars(error)
