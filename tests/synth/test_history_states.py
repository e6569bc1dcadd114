"""The demo city's past (cim.synth.history): yearly states that differ from now the way the years went."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cim.synth.buildings import REFERENCE_YEAR
from cim.synth.generate import SynthSummary
from cim.synth.history import HISTORY_LAYERS, state_years

DATES = [f"{year}-12-31" for year in state_years()]


def table(out: Path, layer: str, day: str | None = None) -> dict[str, np.ndarray]:
    path = out / layer if day is None else out / "history" / day / layer
    return {k: np.asarray(v, dtype=object) for k, v in pq.read_table(f"{path}.parquet").to_pydict().items()}


def test_five_year_end_states_are_listed_oldest_first(city: tuple[Path, SynthSummary]) -> None:
    out, summary = city
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["date"] for s in manifest["history"]] == DATES == ["2021-12-31", *DATES[1:]]
    assert DATES[-1] == f"{REFERENCE_YEAR - 1}-12-31"  # the current files are the year after it
    for state in manifest["history"]:
        assert set(state["layers"]) == set(HISTORY_LAYERS)
        for layer, file in state["layers"].items():
            assert Path(file).name == manifest["layers"][layer]["file"]  # same name: same source on ingest
            assert pq.read_metadata(out / file).num_rows == summary.history[state["date"]][layer]


def test_old_gas_and_water_mains_are_renewed_every_year(city: tuple[Path, SynthSummary]) -> None:
    now = table(city[0], "pipes")
    for day in DATES:
        then = table(city[0], "pipes", day)
        assert (then["pipe_id"] == now["pipe_id"]).all()  # mains are renewed in place, none added
        year = int(day[:4])
        renewed = now["install_year"] != then["install_year"]
        assert set(now["network"][renewed]) == {"gas", "water"}
        assert (now["install_year"][renewed] > year).all() and (then["install_year"][renewed] < 2005).all()
        assert set(then["material"][renewed]) <= {"cast_iron", "steel", "grey_cast_iron"}
        assert set(now["material"][renewed]) <= {"PE", "steel", "ductile_iron"}
        unchanged = ~renewed & (now["network"] != "drainage")
        assert (then["material"][unchanged] == now["material"][unchanged]).all()
    for network in ("gas", "water"):
        years = now["install_year"][now["network"] == network]
        per_year = [int((years == y).sum()) for y in range(state_years()[0] + 1, REFERENCE_YEAR + 1)]
        assert all(n > 0 for n in per_year), (network, per_year)  # at least one a district a year


def test_drainage_mains_inspected_since_a_state_show_the_inspection_before(city: tuple[Path, SynthSummary]) -> None:
    now = table(city[0], "pipes")
    drainage = now["network"] == "drainage"
    assert set(now["inspected_on"][~drainage]) == {None}
    inspected = [0]
    for day in reversed(DATES):
        then = table(city[0], "pipes", day)
        later = drainage & (now["inspected_on"] != then["inspected_on"])
        assert all(d > day for d in now["inspected_on"][later])
        assert all(d is None or d <= day for d in then["inspected_on"][later])
        inspected.append(int(later.sum()))
    assert inspected == sorted(inspected) and inspected[-1] > 0  # more differ the further back


def test_lifts_added_since_a_state_are_not_in_it_and_replaced_ones_were_original(
    city: tuple[Path, SynthSummary],
) -> None:
    now = table(city[0], "lifts")
    counts = []
    for day in DATES:
        then = table(city[0], "lifts", day)
        counts.append(len(then["lift_id"]))
        missing = ~np.isin(now["lift_id"], then["lift_id"])
        assert set(now["install_kind"][missing]) == {"retrofit"} or not missing.any()
        assert (now["install_year"][missing] > int(day[:4])).all()
        kept = now["lift_id"][~missing]
        assert (then["lift_id"] == kept).all()  # the same order, without the later ones
        replaced = (now["install_kind"][~missing] == "replacement") & (
            now["install_year"][~missing] != then["install_year"]
        )
        assert set(then["install_kind"][replaced]) <= {"original"}
        assert (then["install_year"][replaced] < now["install_year"][~missing][replaced]).all()
    assert counts == sorted(counts) and counts[0] < counts[-1] <= len(now["lift_id"])


@pytest.mark.parametrize("layer", ["chargers", "poles"])
def test_chargers_and_poles_are_fewer_each_year_back(city: tuple[Path, SynthSummary], layer: str) -> None:
    now = table(city[0], layer)
    counts = []
    for day in DATES:
        then = table(city[0], layer, day)
        assert (then["install_year"] <= int(day[:4])).all()
        counts.append(len(then["install_year"]))
    counts.append(len(now["install_year"]))
    assert all(a < b for a, b in itertools.pairwise(counts)), counts
