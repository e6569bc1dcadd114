"""The table a build tiles (:mod:`cim.tiling.assets`), read alike from both stores."""

from __future__ import annotations

import pyarrow as pa
import shapely

from cim.model import Asset, AssetBatch, Kind
from cim.store import Store
from cim.tiling.assets import read_assets


def test_columns_empty_in_every_row_keep_their_types(store: Store) -> None:
    # no source and no height anywhere: PostgreSQL's answer alone would type these columns as Arrow's null type
    blocks = [shapely.box(121.5, 31.2, 121.5001 + i / 1e4, 31.2001) for i in range(3)]
    store.upsert_assets(
        AssetBatch.from_assets([Asset(id=f"b{i}", kind=Kind.BUILDING, geom=g) for i, g in enumerate(blocks)])
    )
    table = read_assets(store)
    assert table.num_rows == 3 and set(table.column("group").to_pylist()) != {""}
    assert table.schema.field("source").type == pa.string()
    assert table.schema.field("height_m").type == pa.float64()
    assert table.schema.field("min_x").type == pa.float64()
