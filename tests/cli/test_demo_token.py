"""The demo's write token: in a file only its owner may read, and the help printed with it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cim.cli.demo import ingest_help, token_folder, write_token_file


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_token_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = write_token_file(tmp_path / "data", "s3cret")
    assert path.read_text() == "s3cret\n" and mode(path) == 0o600


def test_a_token_file_left_readable_by_others_is_tightened_and_overwritten(tmp_path: Path) -> None:
    old = tmp_path / "demo-write-token"
    old.write_text("an older, longer token\n")
    old.chmod(0o644)
    path = write_token_file(tmp_path, "new")
    assert path == old and path.read_text() == "new\n" and mode(path) == 0o600


def test_the_token_lives_next_to_a_duckdb_store_else_in_the_users_runtime_folder(
    tmp_path: Path, monkeypatch: object
) -> None:
    assert token_folder(str(tmp_path / "data" / "city.duckdb")) == tmp_path / "data"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # type: ignore[attr-defined]
    assert token_folder("postgresql://localhost/cim") == tmp_path / "run" / "cim"


def test_the_help_shows_a_curl_and_a_mosquitto_pub_with_unit(tmp_path: Path) -> None:
    text = ingest_help(tmp_path / "t", "http://127.0.0.1:8000", "mqtt://127.0.0.1:1883", ("gp-1", 2.5, "kPa"))
    assert f"$(cat {tmp_path / 't'})" in text and "POST http://127.0.0.1:8000/iot/readings" in text
    assert 'mosquitto_pub -h 127.0.0.1 -p 1883 -t cim/gp-1/state -m \'{"value": 2.5, "unit": "kPa"}\'' in text
