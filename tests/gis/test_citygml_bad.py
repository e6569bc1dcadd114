"""Bad CityGML, each file written here: a clear one-line error naming the file (and nothing written), or — where the
rest of the file is good — the good objects in and the bad ones reported by id, as GIS layers do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cim.cli import main
from cim.errors import InvalidInput
from cim.gis.citygml import CityGmlSummary
from cim.gis.readers import parse_crs
from cim.pipeline.ingest import write_source
from cim.store import AssetQuery, Store, open_store

COMPOUND = "urn:ogc:def:crs,crs:EPSG::25832,crs:EPSG::5783"
HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<CityModel xmlns="http://www.opengis.net/citygml/{version}" xmlns:gml="http://www.opengis.net/gml"\n'
    ' xmlns:bldg="http://www.opengis.net/citygml/building/{version}" xmlns:xlink="http://www.w3.org/1999/xlink">\n'
)


def ring(x: float, y: float, z: float, size: float = 10.0) -> str:
    corners = [(x, y), (x + size, y), (x + size, y + size), (x, y + size), (x, y)]
    return " ".join(f"{a} {b} {z}" for a, b in corners)


def polygon(pos_list: str, polygon_id: str = "") -> str:
    own = f' gml:id="{polygon_id}"' if polygon_id else ""
    return (
        f"<gml:surfaceMember><gml:Polygon{own}><gml:exterior><gml:LinearRing><gml:posList>{pos_list}"
        "</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon></gml:surfaceMember>"
    )


def building(object_id: str, n: int, *, extra: str = "", srs: str | None = None, height: str = "5.0") -> str:
    """A flat 10 m square (its ground and roof) at 20 m steps east, in a lod1MultiSurface."""
    x, y = 458_875.0 + 20 * n, 5_438_350.0
    envelope = (
        f'<gml:boundedBy><gml:Envelope srsName="{srs}"><gml:lowerCorner>{x} {y} 112</gml:lowerCorner>'
        f"<gml:upperCorner>{x + 10} {y + 10} 117</gml:upperCorner></gml:Envelope></gml:boundedBy>"
        if srs
        else ""
    )
    surfaces = polygon(ring(x, y, 112.0)) + polygon(ring(x, y, 117.0)) + extra
    return (
        f'<cityObjectMember><bldg:Building gml:id="{object_id}">{envelope}'
        f'<bldg:measuredHeight uom="m">{height}</bldg:measuredHeight>'
        f"<bldg:lod1MultiSurface><gml:MultiSurface>{surfaces}</gml:MultiSurface></bldg:lod1MultiSurface>"
        "</bldg:Building></cityObjectMember>\n"
    )


def model(*members: str, srs: str | None = COMPOUND, version: str = "2.0") -> str:
    envelope = (
        f'<gml:boundedBy><gml:Envelope srsName="{srs}" srsDimension="3"><gml:lowerCorner>0 0 0</gml:lowerCorner>'
        "<gml:upperCorner>1 1 1</gml:upperCorner></gml:Envelope></gml:boundedBy>\n"
        if srs
        else ""
    )
    return HEAD.format(version=version) + envelope + "".join(members) + "</CityModel>\n"


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[Store]:
    with open_store(str(tmp_path / "city.duckdb")) as store:
        yield store


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def ingest(store: Store, path: Path, **options: object) -> CityGmlSummary:
    summary = write_source(store, path, **options)  # type: ignore[arg-type]
    assert isinstance(summary, CityGmlSummary)
    return summary


def rules(summary: CityGmlSummary) -> dict[str, list[object]]:
    return {str(f["rule"]): list(f["examples"]) for f in summary.findings}  # type: ignore[call-overload]


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE CityModel [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n' for i in range(1, 10)
    )
    + ']>\n<CityModel xmlns="http://www.opengis.net/citygml/2.0"><gml:name xmlns:gml="http://www.opengis.net/gml">'
    "&lol9;</gml:name></CityModel>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE CityModel [ <!ENTITY secret SYSTEM "file:///etc/passwd"> ]>\n'
    '<CityModel xmlns="http://www.opengis.net/citygml/2.0"><description>&secret;</description></CityModel>\n'
)
#: id → (the file's text, words its one-line error must hold)
REFUSED: dict[str, tuple[str, str]] = {
    "unknown-version": (
        model(building("B1", 0), version="4.0"),
        "unknown version: namespace 'http://www.opengis.net/citygml/4.0'",
    ),
    "xml-bomb": (BILLION_LAUGHS, "declares XML entities"),
    "external-entity": (EXTERNAL_ENTITY, "declares XML entities"),
    "not-xml": ("just some text, no markup", "is not XML"),
    "no-srs-anywhere": (model(building("B1", 0), building("B2", 1), srs=None), "(objects B1, B2 …); give its CRS"),
    "unknown-srs": (model(building("B1", 0), srs="urn:ogc:def:crs:EPSG::999999"), "object B1 srsName"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_file_is_one_clear_error_and_writes_nothing(duck: Store, tmp_path: Path, case: str) -> None:
    text, words = REFUSED[case]
    path = write(tmp_path, f"{case}.gml", text)
    with pytest.raises(InvalidInput) as caught:
        ingest(duck, path, read_as="citygml")
    message = str(caught.value)
    assert str(path) in message and words in message and len(message.splitlines()) == 1, message
    assert duck.count_by_kind() == {}


def test_the_xml_bomb_is_refused_before_parsing_and_nothing_is_expanded(duck: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "bomb.gml", BILLION_LAUGHS)
    with pytest.raises(InvalidInput, match="refused unread"):
        ingest(duck, path)  # sniffed as CityGML by its name and CityModel, then refused
    assert duck.count_by_kind() == {}


def test_missing_srs_name_is_given_with_crs(duck: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "nosrs.gml", model(building("B1", 0), building("B2", 1), srs=None))
    summary = ingest(duck, path, crs=parse_crs("EPSG:25832"))
    assert summary.assets == {"building": 2} and summary.crs == "EPSG:25832"


def test_crs_fills_in_only_where_there_is_no_srs_name(duck: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "some.gml", model(building("B1", 0, srs=COMPOUND), building("B2", 1), srs=None))
    summary = ingest(duck, path, crs=parse_crs("EPSG:25832+5783"))
    assert summary.assets == {"building": 2} and summary.findings == []
    assert summary.crs == "EPSG:25832+EPSG:5783"  # B1's own srsName, the same CRS as the one given for B2


def test_an_object_without_srs_is_reported_while_the_others_go_in(duck: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "partsrs.gml", model(building("B1", 0, srs=COMPOUND), building("B2", 1), srs=None))
    summary = ingest(duck, path)
    assert summary.assets == {"building": 1} and rules(summary) == {"missing_srs": ["partsrs:B2"]}


def test_a_broken_xlink_rejects_its_object_only(duck: Store, tmp_path: Path) -> None:
    linked = '<gml:surfaceMember xlink:href="#GML_nowhere"/>'
    path = write(tmp_path, "xlink.gml", model(building("B1", 0, extra=linked), building("B2", 1)))
    summary = ingest(duck, path)
    assert summary.assets == {"building": 1} and summary.rejected == 1
    assert rules(summary) == {"broken_xlink:#GML_nowhere": ["xlink:B1"]}
    assert duck.get_asset("xlink:B2").kind == "building"


def test_a_resolved_xlink_reads_the_polygon_it_names(duck: Store, tmp_path: Path) -> None:
    x, y = 458_875.0, 5_438_350.0
    wall = f"{x} {y} 112 {x + 10} {y} 112 {x + 10} {y} 117 {x} {y} 117 {x} {y} 112"
    member = (
        '<cityObjectMember><bldg:Building gml:id="B1"><bldg:lod2Solid><gml:Solid><gml:exterior><gml:CompositeSurface>'
        '<gml:surfaceMember xlink:href="#P_ground"/><gml:surfaceMember xlink:href="#P_wall"/>'
        "</gml:CompositeSurface></gml:exterior></gml:Solid></bldg:lod2Solid>"
        f"<bldg:lod1MultiSurface><gml:MultiSurface>{polygon(ring(x, y, 112.0), 'P_ground')}"
        f"{polygon(wall, 'P_wall')}</gml:MultiSurface></bldg:lod1MultiSurface></bldg:Building></cityObjectMember>"
    )
    summary = ingest(duck, write(tmp_path, "linked.gml", model(member)))
    assert summary.assets == {"building": 1} and summary.lods == {"lod2": 1} and summary.findings == []
    asset = duck.get_asset("linked:B1")
    assert asset.z_min == 112.0 and asset.z_max == 117.0


def test_a_polygon_with_too_few_points_is_dropped_and_named(duck: Store, tmp_path: Path) -> None:
    two_points = polygon("458875 5438350 112 458880 5438350 112 458875 5438350 112", "P_bad")
    only_bad = (
        '<cityObjectMember><bldg:Building gml:id="B3"><bldg:lod1MultiSurface><gml:MultiSurface>'
        f"{two_points}</gml:MultiSurface></bldg:lod1MultiSurface></bldg:Building></cityObjectMember>"
    )
    path = write(tmp_path, "few.gml", model(building("B1", 0, extra=two_points), building("B2", 1), only_bad))
    summary = ingest(duck, path)
    assert summary.assets == {"building": 2}  # B1 keeps its good polygons; B3 has none left
    assert rules(summary) == {"too_few_points:polygon P_bad": ["few:B1", "few:B3"], "empty_geometry": ["few:B3"]}


def test_xml_that_ends_early_keeps_the_objects_before_and_names_the_open_one(duck: Store, tmp_path: Path) -> None:
    whole = model(building("B1", 0), building("B2", 1), building("B3", 2))
    cut = whole[: whole.index('<bldg:Building gml:id="B3">') + 60]
    summary = ingest(duck, write(tmp_path, "cut.gml", cut))
    assert summary.assets == {"building": 2}
    ((rule, examples),) = rules(summary).items()
    assert rule.startswith("xml_broken:line ") and examples == ["cut:B3"]


def test_a_gzip_that_ends_early_is_reported_too(duck: Store, tmp_path: Path) -> None:
    import gzip

    packed = gzip.compress(model(*(building(f"B{i}", i) for i in range(40))).encode())
    summary = ingest(duck, write(tmp_path, "cut.gml.gz", packed[: len(packed) * 2 // 3]))
    assert 0 < summary.assets["building"] < 40
    assert any(rule.startswith("xml_broken") for rule in rules(summary))


def test_a_repeated_gml_id_keeps_the_first_object(duck: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "twice.gml", model(building("B1", 0), building("B1", 3), building("B2", 1)))
    summary = ingest(duck, path)
    assert summary.assets == {"building": 2} and rules(summary) == {"duplicate_id": ["twice:B1"]}
    first = duck.get_asset("twice:B1")
    assert first.geom is not None and first.geom.centroid.x < duck.get_asset("twice:B2").geom.centroid.x


def test_a_non_numeric_measured_height_is_a_finding_not_fatal(duck: Store, tmp_path: Path) -> None:
    path = write(tmp_path, "height.gml", model(building("B1", 0, height="tall"), building("B2", 1)))
    summary = ingest(duck, path)
    assert summary.assets == {"building": 2} and rules(summary) == {"unreadable_value:measuredHeight": ["height:B1"]}
    assert duck.get_asset("height:B1").height_m == pytest.approx(5.0)  # from its geometry instead
    assert duck.get_asset("height:B1").props["citygml.measuredHeight"] == "tall"


def test_two_vertical_datums_in_one_file_are_never_mixed(duck: Store, tmp_path: Path) -> None:
    dhhn2016 = "urn:ogc:def:crs,crs:EPSG::25832,crs:EPSG::7837"
    path = write(tmp_path, "datums.gml", model(building("B1", 0, srs=COMPOUND), building("B2", 1, srs=dhhn2016)))
    summary = ingest(duck, path)
    assert summary.assets == {"building": 1} and rules(summary) == {"other_height_datum": ["datums:B2"]}
    assert "DHHN92" in summary.height_datum


CLI_REFUSED = {
    "bomb": ("bomb.gml", BILLION_LAUGHS, "declares XML entities"),
    "version": ("v4.gml", model(building("B1", 0), version="4.0"), "unknown version"),
    "no-srs": ("nosrs.gml", model(building("B1", 0), srs=None), "--crs"),
}


@pytest.mark.parametrize("case", CLI_REFUSED)
def test_cim_ingest_refuses_in_one_line_exit_2_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    name, text, words = CLI_REFUSED[case]
    path = write(tmp_path, name, text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["ingest", str(path), "--store", str(tmp_path / "c.duckdb")])
    out, err = capsys.readouterr()
    assert done.value.code == 2, out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and name in errors[0] and words in errors[0], err
    assert "Traceback" not in out + err


def test_cim_ingest_of_a_cut_file_writes_the_good_part_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = model(building("B1", 0), building("B2", 1))
    path = write(tmp_path, "cut.gml", whole[: whole.index('gml:id="B2"') + 30])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["ingest", str(path), "--store", str(tmp_path / "c.duckdb")])
    out, err = capsys.readouterr()
    assert done.value.code == 0, out + err
    assert "xml_broken" in out + err and "cut:B2" in out + err and "Traceback" not in out + err
    with open_store(str(tmp_path / "c.duckdb")) as store:
        assert store.count_by_kind() == {"building": 1}


def own_id(member: str, text: str, code_space: str = "urn:cim:asset-id") -> str:
    """``member`` with a gml:identifier right after its building's opening tag."""
    head, rest = member.split("<bldg:Building ", 1)
    tag, body = rest.split(">", 1)
    return f'{head}<bldg:Building {tag}><gml:identifier codeSpace="{code_space}">{text}</gml:identifier>{body}'


def test_an_asset_id_in_our_identifier_code_space_is_kept_and_anything_else_falls_back(
    duck: Store, tmp_path: Path
) -> None:
    members = [
        own_id(building("B1", 0, srs=COMPOUND), "shanghai:bldg-7"),  # our export's: the id it had
        own_id(building("B2", 1, srs=COMPOUND), "x" * 201),  # longer than an id we write: the gml:id
        own_id(building("B3", 2, srs=COMPOUND), "other:9", "http://example.org/ids"),  # someone else's identifier
        own_id(building("B4", 3), "plain"),  # no srsName: the finding names the object by its id
    ]
    summary = ingest(duck, write(tmp_path, "ids.gml", model(*members, srs=None)))
    assert summary.assets == {"building": 3} and rules(summary) == {"missing_srs": ["plain"]}
    assert {a.id for a in duck.find_assets(AssetQuery())} == {"shanghai:bldg-7", "ids:B2", "ids:B3"}
