"""Cases and grid management: units and the dispatch table, machine dispatch from alerts, people's steps,
escalation, photos (issue 21). The store's SQL for cases is :mod:`cim.store.cases`; the values and the state machine
are :mod:`cim.model.cases`.

The app's lifespan starts one :class:`CaseService` and connects the IoT service's alert changes to
:meth:`CaseService.on_alert`::

    cases = CaseService(store, publish=hub_push)   # rules: those ``cim run`` kept beside the store
    await cases.start()                            # units, table, areas; open alerts without a case get one
    ...                                            # cases.report / act / get / list / issue_unit_token
    await cases.stop()
"""

from __future__ import annotations

from cim.cases.dispatch import DispatchTable, Unit, expand_units
from cim.cases.photos import MAX_PHOTO_BYTES, MAX_PHOTOS, Photo
from cim.cases.rules import CaseRule, case_rules
from cim.cases.service import CaseService, CaseServiceOptions, change_dict
from cim.cases.steps import CaseDraft

__all__ = [
    "MAX_PHOTOS",
    "MAX_PHOTO_BYTES",
    "CaseDraft",
    "CaseRule",
    "CaseService",
    "CaseServiceOptions",
    "DispatchTable",
    "Photo",
    "Unit",
    "case_rules",
    "change_dict",
    "expand_units",
]
