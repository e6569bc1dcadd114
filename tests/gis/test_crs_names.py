"""CRS names as both readers take them: CityJSON's ``metadata.referenceSystem`` in each form CityGML's ``srsName`` has
(one reading, :func:`cim.gis.gml.epsg_codes`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cim.errors import InvalidInput
from cim.gis.cityjson import read_cityjson
from cim.gis.gml import srs_frame


def cube(folder: Path, reference: str) -> Path:
    x, y = 155_000, 463_000  # Amersfoort, RD New
    corners = [[x, y, 0], [x + 10, y, 0], [x + 10, y + 10, 0], [x, y + 10, 0]]
    document = {
        "type": "CityJSON",
        "version": "2.0",
        "metadata": {"referenceSystem": reference},
        "CityObjects": {},
        "vertices": corners,
    }
    path = folder / "cube.city.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("reference", "crs"),
    [
        ("https://www.opengis.net/def/crs/EPSG/0/7415", "EPSG:7415"),
        ("urn:ogc:def:crs:EPSG::7415", "EPSG:7415"),
        ("urn:ogc:def:crs:EPSG:6.3:28992", "EPSG:28992"),  # versioned URN: once "names no EPSG code"
        ("EPSG:28992", "EPSG:28992"),
    ],
)
def test_cityjson_reference_system_in_each_form_names_its_crs(tmp_path: Path, reference: str, crs: str) -> None:
    with read_cityjson(cube(tmp_path, reference)) as read:
        assert read.summary(0, 0).crs == crs


def test_a_compound_cityjson_reference_keeps_its_heights_datum_as_citygml_does(tmp_path: Path) -> None:
    compound = "urn:ogc:def:crs,crs:EPSG::28992,crs:EPSG::5709"
    with read_cityjson(cube(tmp_path, compound)) as read:
        summary = read.summary(0, 0)
    assert "NAP" in summary.height_datum  # the first code alone said "no vertical CRS declared"
    assert "NAP" in srs_frame(compound, what="test").height_datum


def test_a_reference_system_without_an_epsg_code_is_named_in_the_error(tmp_path: Path) -> None:
    path = cube(tmp_path, "RD New + NAP")
    with pytest.raises(InvalidInput, match="metadata.referenceSystem.*names no EPSG code"), read_cityjson(path):
        pass
