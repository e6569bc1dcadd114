"""A small generated city with a hand-made history for the check-up tests: the demo generator's 2,000 buildings
ingested on 1 July 2021 (before the plan's baseline, 2021-12-31, so its flows count from a model that was there),
then a change a year, each known here, and cases in 2026.

=========  ==========================================================================================
2021-07-01  every layer ingested
2023-06-01  the 30 oldest gas mains renewed (installed 2023-05-01, PE)
2024-06-01  40 lifts added; the 20 oldest water mains renewed
2025-06-01  30 chargers and 20 poles installed
2026-03-01  25 more gas mains and 25 drainage mains renewed; 30 lifts and 40 chargers added
=========  ==========================================================================================
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cim.gis.mapping import load_mapping
from cim.model import Asset, AssetBatch, Kind
from cim.model.cases import CaseSource, Severity, apply_action, new_case, report_event
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store
from cim.store import cases as case_store
from cim.store.areas import area_tree

ROOT = Path(__file__).resolve().parents[2]
BUILDINGS = 2000
INGESTED = datetime(2021, 7, 1, tzinfo=UTC)
#: (when, what): the changes made after the ingest, as the module's docstring lists them.
RENEWED = {2023: {"gas": 30}, 2024: {"water": 20}, 2026: {"gas": 25, "drainage": 25}}
ADDED = {2024: {Kind.LIFT: 40}, 2025: {Kind.CHARGER: 30, Kind.POLE: 20}, 2026: {Kind.LIFT: 30, Kind.CHARGER: 40}}
CHANGED_AT = {2023: datetime(2023, 6, 1, tzinfo=UTC), 2024: datetime(2024, 6, 1, tzinfo=UTC),
              2025: datetime(2025, 6, 1, tzinfo=UTC), 2026: datetime(2026, 3, 1, tzinfo=UTC)}  # fmt: skip


def generate(out: Path) -> Path:
    from cim.synth.generate import generate_city

    generate_city(out=out, buildings=BUILDINGS, seed=3, towers=0, landmarks=False)
    return out


def build_city(store: Store, synth: Path) -> dict[str, list[str]]:
    """Ingest ``synth`` on :data:`INGESTED` and make the history; the ids changed, by ``<year>:<what>``."""
    manifest = json.loads((synth / "manifest.json").read_text())
    for layer in manifest["layers"].values():
        write_source(store, synth / layer["file"], mapping=load_mapping(ROOT / layer["mapping"]), at=INGESTED)
    changed: dict[str, list[str]] = {}
    renewed: set[str] = set()
    for year in sorted(CHANGED_AT):
        at = CHANGED_AT[year]
        batch: list[Asset] = []
        for network, n in RENEWED.get(year, {}).items():
            pipes = store.find_assets(AssetQuery(kinds=(Kind.PIPE,), where={"network": network}))
            dated = [p for p in pipes if p.install_date and p.id not in renewed]
            oldest = sorted(dated, key=lambda p: (p.install_date, p.id))
            picked = oldest[:n]
            renewed |= {p.id for p in picked}
            batch += [dataclasses.replace(p, install_date=date(year, 2, 1), material="PE") for p in picked]
            changed[f"{year}:{network}"] = [p.id for p in picked]
        for kind, n in ADDED.get(year, {}).items():
            model = store.find_assets(AssetQuery(kinds=(kind,), limit=n))
            new = [dataclasses.replace(a, id=f"{a.id}-{year}", install_date=date(year, 2, 1)) for a in model]
            batch += new
            changed[f"{year}:{kind}"] = [a.id for a in new]
        store.upsert_assets(AssetBatch.from_assets(batch), at=at, by="works")
    return changed


def add_cases(store: Store, year: int = 2026) -> list[str]:
    """Cases reported in ``year``: per street of the first 8 streets (in code order), ``i + 5`` water-main bursts with a
    2 h deadline, the first ``i + 1`` of them handled in an hour, the rest in three (late). Returns the street codes."""
    streets = sorted(code for code, node in area_tree(store).items() if node.level == Kind.STREET)[:8]
    tree = area_tree(store)
    n = 0
    for i, street in enumerate(streets):
        for j in range(i + 5):
            n += 1
            reported = datetime(year, 2, 1, tzinfo=UTC) + timedelta(days=n)
            case = new_case(id=f"C{n:03d}", category="pipe_burst", source=CaseSource.HOTLINE, severity=Severity.NORMAL,
                            at=reported, district=tree[street].parent, street=street, grid_cell=None)  # fmt: skip
            case, first = report_event(case, actor="hotline")
            events = [first]
            late = j >= i + 1
            for action, after in (("file", 5), ("dispatch", 10), ("accept", 20), ("handle", 180 if late else 60)):
                extra = {"data": {"unit": "u1"}, "by_machine": True} if action == "dispatch" else {}
                when = reported + timedelta(minutes=after)
                case, event = apply_action(case, action, actor="centre", at=when, **extra)
                events.append(event)
            case_store.insert_case(store, case, events)
    return streets
