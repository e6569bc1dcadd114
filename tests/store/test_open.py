"""Opening stores: URLs, and the clear errors when a store cannot be had."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cim.errors import InvalidInput, StoreUnavailable
from cim.store import open_store
from cim.store.postgis import _parse_url


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="is a directory"):
        open_store(str(tmp_path))


def test_a_file_that_is_not_duckdb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.duckdb"
    path.write_text("hello, not a database\n")
    with pytest.raises(StoreUnavailable, match=str(path)):
        open_store(str(path))
    assert path.read_text() == "hello, not a database\n"


def test_a_store_open_in_another_process_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "city.duckdb"
    open_store(str(path)).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, duckdb; c = duckdb.connect(sys.argv[1]); print('open', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreUnavailable, match="busy"):
            open_store(str(path))
    finally:
        holder.communicate("")


def test_a_postgresql_server_that_does_not_answer_is_named() -> None:
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1/city.*does not answer"):
        open_store("postgresql://cim:secret@127.0.0.1:1/city")


def test_an_unknown_scheme_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown scheme 'mysql'"):
        open_store("mysql://localhost/city")


def test_postgres_urls_lose_the_password_in_messages_and_keep_the_schema() -> None:
    conninfo, schema, display = _parse_url("postgresql://cim:secret@db:5432/city?schema=shanghai&sslmode=disable")
    assert schema == "shanghai"
    assert "schema" not in conninfo and "sslmode=disable" in conninfo
    assert display == "postgresql://cim@db:5432/city?schema=shanghai"
    with pytest.raises(InvalidInput, match="schema"):
        _parse_url("postgresql://db/city?schema=x;drop")
