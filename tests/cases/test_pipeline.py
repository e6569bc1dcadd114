"""``[[units]]``, ``[[case_rules]]`` and ``[cases]`` in a pipeline file: checked, written by ``cim run`` (units to
the store, rules beside it), nothing written when invalid; and the demo pipeline's own sections are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from cim.cases.config import read_case_config
from cim.cases.dispatch import DispatchTable, expand_units
from cim.cases.rules import case_rules
from cim.errors import InvalidInput
from cim.model import AssetBatch
from cim.pipeline.model import load_pipeline
from cim.pipeline.run import run_pipeline
from cim.store import cases as case_store
from cim.store import open_store
from tests.cases.conftest import TREE, area_assets

REPO = Path(__file__).resolve().parents[2]
UNITS = """
[[units]]
id = "sh-gas"
name = "上海燃气集团"
categories = ["gas_leak"]

[[units]]
per = "district"
id = "gas-{code}"
name = "{name}燃气公司"
name_en = "{name_en} gas company"
categories = ["gas_leak"]
reports_to = "sh-gas"

[[case_rules]]
quantity = "gas_pressure"
category = "gas_leak"
severity = { warning = "urgent" }
join_distance_m = 150
"""


def pipeline(tmp_path: Path, store_url: str, body: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(f'name = "t"\nstore = "{store_url}"\n[merge]\nenabled = false\n{body}', encoding="utf-8")
    return path


def test_run_writes_units_and_rules(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        store.upsert_assets(AssetBatch.from_assets(area_assets()))
    summary = run_pipeline(load_pipeline(pipeline(tmp_path, store_url, UNITS)))
    assert summary.ok and summary.cases == {"units": 3, "case_rules": 1, "errors": []}
    with open_store(store_url) as store:
        units = {u.id: u for u in case_store.load_units(store)}
        assert units["gas-310104"].name == "徐汇区燃气公司" and units["gas-310104"].reports_to == "sh-gas"
        assert units["gas-310104"].level == "district" and units["sh-gas"].level == "city"
        config = read_case_config(store)
        assert config is not None
        (rule,) = config.rules
    assert rule.category == "gas_leak" and rule.join_distance_m == 150 and rule.case_severity("warning") == "urgent"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            UNITS.replace('reports_to = "sh-gas"', 'reports_to = "gas-{code}"'),
            "reports_to loops: gas-310101 → gas-310101",
        ),
        (UNITS.replace('category = "gas_leak"', 'category = "gas"'), "case rule 'case_rules[0] (gas)' category"),
        (
            UNITS + '[[case_rules]]\nquantity = "water_level"\ncategory = "waterlogging"\n',
            "no unit answers for waterlogging",
        ),
        (UNITS + "[cases]\nrequire_all_categories = true\n", "category lift_fault has no unit"),
    ],
)
def test_invalid_units_store_nothing(store_url: str, tmp_path: Path, body: str, message: str) -> None:
    with open_store(store_url) as store:
        store.upsert_assets(AssetBatch.from_assets(area_assets()))
    summary = run_pipeline(load_pipeline(pipeline(tmp_path, store_url, body)))
    assert not summary.ok and summary.cases is not None and message in summary.cases["errors"][0]
    with open_store(store_url) as store:
        assert case_store.load_units(store) == [] and read_case_config(store) is None


def test_units_without_areas(store_url: str, tmp_path: Path) -> None:
    summary = run_pipeline(load_pipeline(pipeline(tmp_path, store_url, UNITS)))
    assert summary.cases is not None and "the store holds no areas" in summary.cases["errors"][0]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"units.0.categorys \(line \d+\): unknown key"):
        load_pipeline(
            pipeline(tmp_path, "x.duckdb", '[[units]]\nid = "a"\ncategories = ["gas_leak"]\ncategorys = []\n')
        )


def test_demo_pipeline_units_and_rules_are_valid() -> None:
    demo = load_pipeline(REPO / "pipelines" / "shanghai-demo.toml")
    assert {r.category for r in case_rules([r.model_dump(exclude_none=True) for r in demo.case_rules])} == {
        "gas_leak",
        "waterlogging",
        "lift_fault",
    }
    units = expand_units([u.model_dump(exclude_none=True) for u in demo.units], TREE)
    table = DispatchTable.build(units, TREE)
    cell = ("310101001001", "310101001", "310101")
    assert [getattr(table.unit_for(c, cell), "id", None) for c in ("gas_leak", "manhole_cover", "lift_fault")] == [
        "gas-310101",
        "grid-310101001",
        "lift-310101",
    ]
