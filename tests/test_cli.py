"""The CLI as a user meets it: a real subprocess, exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cim import __version__
from cim.store import open_store


def cim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cim", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help() -> None:
    assert cim("--version").stdout.strip() == f"cim {__version__}"
    help_text = cim("--help")
    assert help_text.returncode == 0 and "info" in help_text.stdout


def test_info_of_an_empty_store_as_json(tmp_path: Path) -> None:
    open_store(str(tmp_path / "city.duckdb")).close()
    result = cim("info", "--store", str(tmp_path / "city.duckdb"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"store": str(tmp_path / "city.duckdb"), "assets": {}, "extent": None}


def test_a_bad_store_is_one_error_line_with_status_2(tmp_path: Path) -> None:
    result = cim("info", "--store", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == f"error: store {tmp_path} — is a directory; give a file path such as city.duckdb\n"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = cim("--debug", "info", "--store", str(tmp_path))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_the_store_comes_from_the_environment(tmp_path: Path) -> None:
    store = tmp_path / "env.duckdb"
    open_store(str(store)).close()
    result = subprocess.run(
        [sys.executable, "-m", "cim", "info", "--json"],
        capture_output=True,
        text=True,
        env={"CIM_STORE": str(store), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert json.loads(result.stdout)["store"] == str(store)


def test_an_unknown_option_is_a_usage_error() -> None:
    result = cim("info", "--bogus")
    assert result.returncode == 2 and "No such option: --bogus" in result.stderr and "Traceback" not in result.stderr


def test_ingest_prints_a_json_summary_and_reports_a_bad_file(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gis"
    store = str(tmp_path / "city.duckdb")
    mapping = Path(__file__).resolve().parents[1] / "pipelines" / "mappings" / "cambridge-hydrants.toml"
    result = cim(
        "ingest",
        str(data / "INFRA_Hydrants.geojson"),
        str(tmp_path / "missing.geojson"),
        "--map",
        str(mapping),
        "--store",
        store,
        "--json",
    )
    assert result.returncode == 2  # one file failed; the other went in
    summary = json.loads(result.stdout)
    good, bad = summary["files"]
    assert good["ok"] and good["features_read"] == 1960 and good["assets"] == {"hydrant": 1960}
    assert {"rule": "implausible_install_date", "count": 1} in [
        {"rule": f["rule"], "count": f["count"]} for f in good["findings"]
    ]
    assert not bad["ok"] and bad["error"] == f"file {tmp_path / 'missing.geojson'} — does not exist"
    assert summary["assets"] == {"hydrant": 1960} and summary["seconds"] > 0
    assert json.loads(cim("info", "--store", store, "--json").stdout)["assets"] == {"hydrant": 1960}


def test_ingest_of_a_named_layer_with_a_preset(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gis"
    result = cim(
        "ingest",
        f"{data / 'Helsinki.osm.pbf'}:points",
        "--preset",
        "osm-bus-stops",
        "--store",
        str(tmp_path / "c.duckdb"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["assets"] == {"transit_stop": 92}


def test_ingest_json_stays_json_when_the_geometry_kernel_prints(tmp_path: Path) -> None:
    """ifcopenshell's C++ code prints ``local z: …`` to stdout for this file's linear placements; stdout must
    still hold the one JSON object scripts read."""
    ifc = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ifc" / "linear-placement-of-signal.ifc"
    result = cim("ingest", str(ifc), "--store", str(tmp_path / "c.duckdb"), "--place", "121.5,31.2,0", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["files"][0]["ok"] and summary["files"][0]["georeference"]["method"] == "placement"


def test_a_reingest_of_nothing_is_refused_on_one_line_and_allow_empty_empties(tmp_path: Path) -> None:
    shelters = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gis" / "TRANS_BusShelters.geojson"
    path, store = tmp_path / "[x] TRANS_BusShelters.geojson", str(tmp_path / "city.duckdb")
    document = json.loads(shelters.read_text(encoding="utf-8"))
    path.write_text(json.dumps(document), encoding="utf-8")
    assert cim("ingest", str(path), "--kind", "transit_stop", "--store", store).returncode == 0
    document["features"] = [{**document["features"][0], "geometry": None}]
    path.write_text(json.dumps(document), encoding="utf-8")
    result = cim("ingest", str(path), "--kind", "transit_stop", "--store", store, "--json")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == (
        f"error: layer '[x] TRANS_BusShelters' of {path} — yields no valid asset: its only feature was rejected "
        "(unreadable_geometry ×1 (e.g. [x] TRANS_BusShelters:0)); the 68 assets stored from it are kept "
        "(cim ingest --allow-empty removes them)"
    )
    assert json.loads(cim("info", "--store", store, "--json").stdout)["assets"] == {"transit_stop": 68}
    result = cim("ingest", str(path), "--kind", "transit_stop", "--store", store, "--allow-empty", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(cim("info", "--store", store, "--json").stdout)["assets"] == {}


def test_ingest_needs_one_way_to_map() -> None:
    result = cim("ingest", "x.geojson", "--kind", "park", "--preset", "osm-parks")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ingest options — give exactly one of --kind, --map or --preset")


def test_indicators_print_every_vital_sign_as_json(tmp_path: Path) -> None:
    open_store(str(tmp_path / "empty.duckdb")).close()
    result = cim("indicators", "--store", str(tmp_path / "empty.duckdb"), "--json")
    assert result.returncode == 0, result.stderr
    signs = json.loads(result.stdout)["indicators"]
    assert {"old_lifts", "old_gas_mains_km", "homes_near_park", "stops_near_metro", "open_alerts"} <= {
        i["id"] for i in signs
    }
    assert all(i["definition"] for i in signs)
