from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from shapely.geometry import Point

from cim.errors import InvalidInput
from cim.model import Asset, Kind, Mesh, Reading, fields_of


def test_a_kind_given_as_text_becomes_a_kind() -> None:
    assert Asset(id="x", kind="lift", geom=Point(121.5, 31.2)).kind is Kind.LIFT  # type: ignore[arg-type]


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match="'castle'.*known kinds: site, building"):
        Asset(id="x", kind="castle")  # type: ignore[arg-type]


def test_a_field_of_another_kind_is_refused() -> None:
    with pytest.raises(InvalidInput, match="storeys.*does not apply to kind pipe"):
        Asset(id="p", kind=Kind.PIPE, storeys=3)


def test_an_asset_needs_an_id() -> None:
    with pytest.raises(InvalidInput, match="asset id"):
        Asset(id="", kind=Kind.PARK)


def test_pipes_have_network_fields_and_buildings_storeys() -> None:
    assert {"network", "diameter_mm", "depth_m"} <= set(fields_of(Kind.PIPE))
    assert "storeys" in fields_of(Kind.BUILDING) and "diameter_mm" not in fields_of(Kind.BUILDING)


def test_a_mesh_is_float32_vertices_and_uint32_triangles() -> None:
    vertices = np.zeros((3, 3), dtype=np.float64)
    with pytest.raises(InvalidInput, match="float32"):
        Mesh(asset_id="a", origin=(121.5, 31.2, 0.0), vertices=vertices, triangles=np.zeros((1, 3), np.uint32))
    with pytest.raises(InvalidInput, match="vertex that does not exist"):
        Mesh(
            asset_id="a",
            origin=(121.5, 31.2, 0.0),
            vertices=vertices.astype(np.float32),
            triangles=np.array([[0, 1, 3]], np.uint32),
        )


def test_a_reading_needs_a_time_zone_and_a_finite_value() -> None:
    with pytest.raises(InvalidInput, match="no time zone"):
        Reading(sensor_id="s", time=datetime(2026, 1, 1), value=1.0)
    with pytest.raises(InvalidInput, match="finite"):
        Reading(sensor_id="s", time=datetime.fromisoformat("2026-01-01T00:00:00+08:00"), value=float("inf"))
