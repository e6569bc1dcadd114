"""DuckDB's spatial extension: where the ``duckdb-extension-spatial`` package put it, and loading it."""

from __future__ import annotations

from pathlib import Path

import duckdb

from cim.errors import StoreUnavailable

__all__ = ["load_spatial", "spatial_extension_path"]


def spatial_extension_path() -> Path:
    """The spatial extension file shipped by the ``duckdb-extension-spatial`` package for this DuckDB version."""
    try:
        import duckdb_extension_spatial
    except ImportError:
        raise StoreUnavailable(
            "DuckDB spatial extension",
            "the package duckdb-extension-spatial is not installed; "
            f"pip install duckdb-extension-spatial=={duckdb.__version__}",
        ) from None
    path = (
        Path(duckdb_extension_spatial.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "spatial.duckdb_extension"
    )
    if not path.is_file():
        raise StoreUnavailable(
            "DuckDB spatial extension",
            f"no build for DuckDB {duckdb.__version__} at {path}; "
            f"install duckdb-extension-spatial=={duckdb.__version__}",
        )
    return path


def load_spatial(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD the extension into ``con``'s database (0.13-0.23 s: an 81 MB library with GDAL, GEOS and PROJ inside)."""
    try:
        con.execute(f"LOAD '{spatial_extension_path()}'")
    except duckdb.Error as exc:
        raise StoreUnavailable("DuckDB spatial extension", f"cannot be loaded: {exc}") from None
