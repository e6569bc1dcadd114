"""Bad command lines, mapping files, pipeline files and IFC files through ``cim`` (in-process, ``cim.cli.main``), on a
store that holds a real layer: one line ``error: <what> — <why>`` naming the option or file, exit status 2, no
traceback, and the store and its mesh file as they were."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cim.cli import main
from cim.store import open_store
from cim.store.meshes import open_meshes
from tests.unchanged import Snapshot, snapshot

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHELTERS = str(DATA / "gis" / "TRANS_BusShelters.geojson")
#: makes the files a case needs in a folder and returns the arguments after ``cim``
Args = Callable[[Path], list[str]]


def write(name: str, content: str | bytes) -> Callable[[Path], str]:
    def make(folder: Path) -> str:
        path = folder / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    return make


def ingest_with_map(toml: str | bytes) -> Args:
    return lambda folder: ["ingest", SHELTERS, "--map", write("m.toml", toml)(folder)]


def run_pipeline(toml: str) -> Args:
    return lambda folder: ["run", write("p.toml", toml)(folder)]


def ingest_file(name: str, content: str | bytes) -> Args:
    return lambda folder: ["ingest", write(name, content)(folder)]


def head_of(relative: str, size: int, name: str) -> Args:
    return lambda folder: ["ingest", write(name, (DATA / relative).read_bytes()[:size])(folder)]


def given(*args: str) -> Args:
    return lambda folder: list(args)


IFC_HEADER = "ISO-10303-21;\nHEADER;\nFILE_DESCRIPTION((''),'2;1');\nFILE_NAME('','',(''),(''),'','','');\n"
#: id → (the command line, words its error line must hold)
COMMANDS: dict[str, tuple[Args, str]] = {
    "crs-garbage": (given("ingest", SHELTERS, "--kind", "pole", "--crs", "EPSG:nope"), "--crs 'EPSG:nope'"),
    "place-words": (given("ingest", SHELTERS, "--place", "a,b"), "placement 'a,b'"),
    "place-off-the-earth": (given("ingest", SHELTERS, "--place", "200,0,0"), "lon must be in -180..180"),
    "kind-unknown": (given("ingest", SHELTERS, "--kind", "castle"), "kind 'castle'"),
    "preset-unknown": (given("ingest", SHELTERS, "--preset", "nope"), "preset 'nope'"),
    "valid-from-words": (given("ingest", SHELTERS, "--kind", "pole", "--valid-from", "last year"), "--valid-from"),
    "valid-from-future": (given("ingest", SHELTERS, "--kind", "pole", "--valid-from", "2999-01-01"), "future"),
    # the shelters went in now: their history is not rewritten
    "valid-from-before-history": (
        given("ingest", SHELTERS, "--kind", "transit_stop", "--valid-from", "2001-01-01"),
        "before the latest recorded change",
    ),
    "two-mappings": (given("ingest", SHELTERS, "--kind", "park", "--preset", "osm-parks"), "ingest options"),
    "map-missing": (given("ingest", SHELTERS, "--map", "/nonexistent/m.toml"), "no such file"),
    "map-not-toml": (ingest_with_map("kind = "), "is not valid TOML"),
    "map-binary-junk": (ingest_with_map(bytes(range(256))), "m.toml"),
    "map-unknown-key": (ingest_with_map('kind = "pipe"\ncolour = "red"\n'), "colour"),
    "map-unknown-kind": (ingest_with_map('kind = "castle"\n'), "kind"),
    "map-units-mismatch": (ingest_with_map('kind = "pipe"\n[units]\ninstall_date = "ft"\n'), "units.install_date"),
    "map-negative-storey-height": (ingest_with_map('kind = "building"\nstorey_height_m = -3\n'), "storey_height_m"),
    "map-field-a-number": (ingest_with_map('kind = "building"\n[fields]\nname = 5\n'), "fields.name"),
    "map-missing-field": (ingest_with_map('kind = "building"\n[fields]\nname = "NOPE"\n'), "NOPE"),
    "map-bad-where": (ingest_with_map('kind = "building"\nwhere = "(((( nope"\n'), "filter '(((( nope'"),
    "map-unknown-layer": (ingest_with_map('kind = "building"\nlayer = "roads"\n'), "'roads'"),
    "store-unknown-scheme": (given("info", "--store", "mysql://x/y"), "unknown scheme 'mysql'"),
    "area-missing": (given("query", "buried-pipes", "--area", "/nonexistent/a.geojson"), "area file"),
    "area-not-json": (lambda f: ["query", "buried-pipes", "--area", write("a.geojson", "{oops")(f)], "is not JSON"),
    "area-a-point": (
        lambda f: ["query", "buried-pipes", "--area", write("a.geojson", '{"type":"Point","coordinates":[1,2]}')(f)],
        "error: area — must be a GeoJSON Polygon",
    ),
    "bbox-and-area": (given("query", "buried-pipes", "--bbox", "1,2,3,4", "--area", "x.geojson"), "exactly one"),
    "bbox-words": (given("query", "buried-pipes", "--bbox", "a,b,c,d"), "bbox"),
    "within-unknown-kind": (
        given("query", "within-distance", "--kind", "castle", "--near", "park", "--distance", "5"),
        "castle",
    ),
    "merge-prefer-nope": (given("merge", "--prefer", "nope"), "--prefer 'nope'"),
    "pipeline-missing": (given("run", "/nonexistent/p.toml"), "no such file"),
    "pipeline-not-toml": (run_pipeline("name = "), "is not valid TOML"),
    "pipeline-unknown-key": (run_pipeline('name = "x"\ncolour = "red"\n'), "colour (line 2): unknown key"),
    "pipeline-wrong-type": (run_pipeline('name = "x"\n[synth]\nout = "s"\nbuildings = "many"\n'), "synth.buildings"),
    "pipeline-gis-without-path": (run_pipeline('name = "x"\n[[gis]]\nkind = "pole"\n'), "gis.0.path"),
    # a source that fails is reported on its own error line; the run exits 2 and the store keeps what it had
    "pipeline-source-missing": (
        run_pipeline('name = "x"\n[[gis]]\npath = "[gone].geojson"\nkind = "pole"\n'),
        "[gone].geojson",
    ),
    "ifc-garbage": (ingest_file("junk.ifc", "this is not IFC"), "junk.ifc"),
    "ifc-binary": (ingest_file("bin.ifc", bytes(range(256)) * 20), "bin.ifc"),
    "ifc-empty": (ingest_file("empty.ifc", b""), "empty.ifc"),
    "ifc-truncated": (head_of("ifc/IfcOpenHouse_IFC4.ifc", 3000, "cut.ifc"), "cut.ifc"),
    "ifc-unknown-schema": (
        ingest_file("s.ifc", IFC_HEADER + "FILE_SCHEMA(('IFC9'));\nENDSEC;\nDATA;\nENDSEC;\nEND-ISO-10303-21;\n"),
        "s.ifc",
    ),
    "ifczip-not-zip": (ingest_file("z.ifczip", "PK not really"), "z.ifczip"),
}


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def city(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A store with the 68 bus shelters ingested by ``cim ingest``, for the module: (URL, its folder)."""
    folder = tmp_path_factory.mktemp("cli")
    if request.param == "duckdb":
        url = str(folder / "city.duckdb")
    else:
        url = f"{request.getfixturevalue('postgres_url')}?schema=t_cli_{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # relative paths the commands write land in the test's folder
        with pytest.raises(SystemExit) as done:
            main(["ingest", SHELTERS, "--kind", "transit_stop", "--store", url, "--json"])
        assert done.value.code == 0
        try:
            yield url, folder
        finally:
            if request.param == "postgis":
                import psycopg

                base, _, schema = url.partition("?schema=")
                with psycopg.connect(base, autocommit=True) as con:
                    con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def content(url: str, folder: Path) -> Snapshot:
    with open_store(url) as store, open_meshes(url, read_only=True) as meshes:  # PostGIS: its meshes table
        return snapshot(store, meshes)


@pytest.mark.parametrize("case", COMMANDS)
def test_a_bad_command_is_one_error_line_exit_2_and_changes_nothing(
    city: tuple[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    url, folder = city
    monkeypatch.chdir(folder)
    before = content(url, folder)
    assert before.kinds == {"transit_stop": 68}
    make, words = COMMANDS[case]
    args = make(tmp_path)
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(args if "--store" in args else [*args, "--store", url])
    out, err = capsys.readouterr()
    assert done.value.code == 2, out + err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and " — " in errors[0] and words in errors[0], err
    assert "Traceback" not in out + err
    assert content(url, folder) == before
