"""Shared fixtures: real stores on both backends, the shared test data.

PostgreSQL/PostGIS tests talk to a real server (``CIM_TEST_POSTGRES``, default the local trust-auth server). Where
it is missing a test is skipped, except in CI (``CI=true``), where a missing service is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cim.store import Store, open_store

#: The script that wrote the schema-v1 store fixtures runs against the release that wrote them (commit 2a3f3ad), whose
#: module paths it imports: it is kept to show how they were made, not collected.
collect_ignore = [
    "store/fixtures/make_v1.py",
    "api/qgis_client.py",  # run by Debian's python3 with QGIS's bindings (tests/api/test_qgis.py), not imported here
]

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POSTGRES_ADMIN = os.environ.get("CIM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_DATABASE = "cim_test"


def missing_service(why: str) -> None:
    """Skip, or fail under CI, when a service a test needs is not there."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why} (CI=true: a missing service is a failure)")
    pytest.skip(why)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A libpq URL of a database with PostGIS for the tests, created when missing."""
    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=3) as con:
            if not con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEST_DATABASE]).fetchone():
                con.execute(f"CREATE DATABASE {TEST_DATABASE}")
            if not con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone():
                missing_service("the PostGIS extension is not installed on the PostgreSQL server")
        with psycopg.connect(POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + TEST_DATABASE, autocommit=True) as con:
            # as a store's first open does; a test that restores a dump naming public.geometry comes first on a
            # fresh server when it runs alone
            con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at {POSTGRES_ADMIN} does not answer: {exc}")
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + "/" + TEST_DATABASE


@pytest.fixture
def postgis_schema_url(postgres_url: str) -> Iterator[str]:
    """A store URL with a fresh schema of its own, dropped after the test."""
    schema = "t_" + uuid.uuid4().hex[:12]
    yield f"{postgres_url}?schema={schema}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["duckdb", pytest.param("postgis", marks=pytest.mark.postgis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "city.duckdb")
    return str(request.getfixturevalue("postgis_schema_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with open_store(store_url) as opened:
        yield opened


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"the shared test data is missing at {DATA}; the tests read it from ../shared/data")
    return DATA
