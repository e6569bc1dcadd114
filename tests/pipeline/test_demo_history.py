"""The demo pipeline ingests the generated city's past in date order, on both stores: the model as of a past date
holds that year's state, a year's changes show renewed gas mains, and a second run skips everything."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cim.errors import InvalidInput
from cim.pipeline.model import load_pipeline
from cim.pipeline.run import run_pipeline
from cim.store import open_store
from cim.store.changes import Window, change_summary
from cim.store.sqlstore import sql_store


def write_pipeline(folder: Path, store_url: str, extra: str = "") -> Path:
    path = folder / "demo.toml"
    path.write_text(
        f"""
name = "demo-history"
store = {json.dumps(store_url)}

[synth]
out = {json.dumps(str(folder / "synth"))}
buildings = 300
seed = 3
towers = 0
landmarks = false

[merge]
enabled = false
{extra}
""",
        encoding="utf-8",
    )
    return path


def rows(folder: Path, file: str) -> int:
    return pq.read_metadata(folder / "synth" / file).num_rows


def test_the_demo_city_is_ingested_with_its_past_and_a_second_run_skips_it(store_url: str, tmp_path: Path) -> None:
    pipeline = load_pipeline(write_pipeline(tmp_path, store_url))
    first = run_pipeline(pipeline)
    assert first.ok, [s.error for s in first.sources if s.error]
    assert first.synth is not None and first.synth["history"][0] == "2021-12-31"
    dated = [s.details["valid_from"][:10] for s in first.sources if "valid_from" in s.details]
    states = [d for d in dated if d != "2021-12-31"]
    assert states == sorted(states) and len(states) == 4 * 4  # four later states of four layers
    with open_store(store_url) as store:
        now = store.count_by_kind()
        then = sql_store(store).as_of(datetime(2023, 6, 30, tzinfo=UTC)).count_by_kind()
        assert then["building"] == now["building"] and then["road"] == now["road"]  # first ingested at the baseline
        assert then["charger"] == rows(tmp_path, "history/2022-12-31/chargers.parquet") < now["charger"]
        assert then["lift"] == rows(tmp_path, "history/2022-12-31/lifts.parquet") < now["lift"]
        assert then["pole"] < now["pole"] and then["pipe"] == now["pipe"]
        year = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
        summary = change_summary(sql_store(store), year, by=("kind", "network", "change"))
        renewed = {(r["kind"], r["network"], r["change"]): r for r in summary}
        assert renewed["pipe", "gas", "renewed"]["length_m"] > 0
        assert renewed["pipe", "water", "renewed"]["count"] > 0
        assert renewed["pipe", "drainage", "changed"]["count"] > 0  # inspected: props.inspected_on
        assert renewed["charger", None, "added"]["count"] > 0
        with pytest.raises(InvalidInput, match="before the model's history"):
            sql_store(store).as_of(datetime(2020, 6, 30, tzinfo=UTC))

    second = run_pipeline(pipeline)
    assert second.ok and all(s.skipped for s in second.sources), [s.path for s in second.sources if not s.skipped]
    assert second.removed == [] and second.merge is None and second.sensors["changed"] is False


def test_a_source_with_valid_from_is_dated_and_one_in_the_future_is_refused(store_url: str, tmp_path: Path) -> None:
    layer = tmp_path / "hydrants.geojson"
    layer.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "h1"},
                        "geometry": {"type": "Point", "coordinates": [121.5, 31.2]},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    entry = f'[[gis]]\npath = {json.dumps(str(layer))}\nkind = "hydrant"\nvalid_from = "2023-03-01"\n'
    path = tmp_path / "p.toml"
    path.write_text(f'name = "dated"\nstore = {json.dumps(store_url)}\n[merge]\nenabled = false\n{entry}', "utf-8")
    result = run_pipeline(load_pipeline(path))
    assert result.ok and result.sources[0].details["valid_from"].startswith("2023-03-01")
    with open_store(store_url) as store:
        before = sql_store(store).as_of(datetime(2023, 3, 1, 12, tzinfo=UTC)).count_by_kind()
        assert before == {"hydrant": 1}
    path.write_text(path.read_text("utf-8").replace("2023-03-01", "2999-01-01"), "utf-8")
    refused = run_pipeline(load_pipeline(path))
    assert not refused.ok and "future" in (refused.sources[0].error or "")
