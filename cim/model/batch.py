"""Columnar batches of assets: the one shape in which assets enter and leave a store.

A batch is an Arrow table with :data:`~cim.model.schema.ASSET_SCHEMA` (geometry as WKB, ``props`` as JSON text).
Ingest paths that already hold columns (GIS layers, the generator) build one with :meth:`AssetBatch.from_table`
without creating a Python object per feature; the rest use :meth:`AssetBatch.from_assets`. Either way the batch is
checked here, vectorised, before any store sees it: one place says what a storable asset is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from cim.errors import InvalidInput
from cim.model.schema import ASSET_SCHEMA, COLUMN_NAMES
from cim.model.values import KIND_FIELDS, Asset, Kind

_KIND_VALUES = pa.array([k.value for k in Kind])
_NON_NEGATIVE = ("height_m", "diameter_mm", "depth_m", "storeys")
_SHOWN = 5  # how many offending ids an error message lists


@dataclass(frozen=True, slots=True)
class AssetBatch:
    """Assets as columns. Build with :meth:`from_assets` or :meth:`from_table`; both validate.

    >>> from shapely.geometry import Point
    >>> batch = AssetBatch.from_assets([Asset(id="p1", kind=Kind.POLE, geom=Point(121.5, 31.2))])
    >>> len(batch), batch.to_assets()[0].geom.wkt
    (1, 'POINT (121.5 31.2)')
    """

    table: pa.Table

    def __len__(self) -> int:
        return self.table.num_rows

    @classmethod
    def from_assets(cls, assets: Iterable[Asset]) -> AssetBatch:
        items = list(assets)
        columns: dict[str, list[Any]] = {name: [] for name in COLUMN_NAMES}
        for asset in items:
            for name in COLUMN_NAMES:
                if name == "geom":
                    continue
                if name == "props":
                    columns[name].append(_props_json(asset))
                else:
                    columns[name].append(getattr(asset, name))
        columns["geom"] = list(shapely.to_wkb(np.array([a.geom for a in items], dtype=object)))
        table = pa.table(
            {name: pa.array(columns[name], type=ASSET_SCHEMA.field(name).type) for name in COLUMN_NAMES},
            schema=ASSET_SCHEMA,
        )
        return cls.from_table(table)

    @classmethod
    def from_table(cls, table: pa.Table) -> AssetBatch:
        """A batch from an Arrow table holding some of the asset columns; missing ones are null.

        ``geom`` is WKB (``shapely.to_wkb``) and ``props`` JSON text.
        """
        unknown = sorted(set(table.column_names) - set(COLUMN_NAMES))
        if unknown:
            raise InvalidInput(f"asset batch columns {unknown}", f"not asset columns; known: {', '.join(COLUMN_NAMES)}")
        arrays = []
        for field in ASSET_SCHEMA:
            if field.name not in table.column_names:
                arrays.append(pa.nulls(table.num_rows, field.type))
                continue
            column = table.column(field.name)
            try:
                arrays.append(column.cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InvalidInput(
                    f"asset batch column {field.name!r}", f"cannot be read as {field.type}: {exc}"
                ) from None
        batch = cls(pa.Table.from_arrays(arrays, schema=ASSET_SCHEMA).combine_chunks())
        batch.validate()
        return batch

    @classmethod
    def concat(cls, batches: Sequence[AssetBatch]) -> AssetBatch:
        return cls(pa.concat_tables([b.table for b in batches]))

    def validate(self) -> None:
        """Raise :class:`InvalidInput` naming the first offending assets, or return if the batch may be stored."""
        table = self.table
        ids = table.column("id")
        if ids.null_count or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
            raise InvalidInput("asset batch", "an asset has no id (null or empty)")
        counts = pc.value_counts(ids)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        if len(repeated):
            raise InvalidInput(f"asset ids {_listed(repeated)}", "appear more than once in one batch")
        kinds = table.column("kind")
        bad_kind = pc.invert(pc.fill_null(pc.is_in(kinds, value_set=_KIND_VALUES), False))
        if pc.any(bad_kind).as_py():
            shown = _listed(pc.unique(pc.filter(pc.fill_null(kinds, "<null>"), bad_kind)))
            raise InvalidInput(f"asset kind {shown}", f"unknown; known kinds: {', '.join(k.value for k in Kind)}")
        for name, allowed in KIND_FIELDS.items():
            wrong = pc.and_(
                pc.is_valid(table.column(name)),
                pc.invert(pc.is_in(kinds, value_set=pa.array([k.value for k in allowed]))),
            )
            if pc.any(wrong).as_py():
                raise InvalidInput(
                    f"field {name} of assets {_listed(pc.filter(ids, wrong))}",
                    f"does not apply to their kind; it applies to: {', '.join(sorted(k.value for k in allowed))}",
                )
        for name in (*_NON_NEGATIVE, "z_min", "z_max"):
            values = pc.cast(table.column(name), pa.float64())
            bad = pc.invert(pc.fill_null(pc.is_finite(values), True))
            if name in _NON_NEGATIVE:
                bad = pc.or_(bad, pc.fill_null(pc.less(values, 0), False))
            if pc.any(bad).as_py():
                raise InvalidInput(
                    f"field {name} of assets {_listed(pc.filter(ids, bad))}",
                    "must be a finite number" + (" ≥ 0" if name in _NON_NEGATIVE else ""),
                )
        inverted = pc.fill_null(pc.greater(table.column("z_min"), table.column("z_max")), False)
        if pc.any(inverted).as_py():
            raise InvalidInput(f"z range of assets {_listed(pc.filter(ids, inverted))}", "z_min is above z_max")
        self._validate_geometry()

    def _validate_geometry(self) -> None:
        ids = self.table.column("id")
        geoms = self.geometries()
        present = ~shapely.is_missing(geoms)
        problems = (
            (present & shapely.is_empty(geoms), "is empty"),
            (present & ~shapely.is_valid(geoms), "is not valid (self-intersecting or unclosed); repair it first"),
            (
                present & shapely.has_z(geoms),
                "has z coordinates; asset geometry is 2D lon/lat, heights go to z_min/z_max",
            ),
        )
        for mask, why in problems:
            if mask.any():
                raise InvalidInput(f"geometry of assets {_listed(pc.filter(ids, pa.array(mask)))}", why)
        bounds = shapely.bounds(geoms[present])
        outside = np.zeros(len(geoms), dtype=bool)
        if len(bounds):
            outside[present] = (bounds[:, 0] < -180) | (bounds[:, 2] > 180) | (bounds[:, 1] < -90) | (bounds[:, 3] > 90)
        if outside.any():
            raise InvalidInput(
                f"geometry of assets {_listed(pc.filter(ids, pa.array(outside)))}",
                "lies outside lon -180..180 / lat -90..90; is it in WGS84?",
            )

    def geometries(self) -> np.ndarray:
        """The geometry column as shapely objects (``None`` where an asset has none)."""
        wkb = self.table.column("geom").to_numpy(zero_copy_only=False)
        try:
            return shapely.from_wkb(wkb, on_invalid="raise")
        except shapely.errors.GEOSException as exc:
            raise InvalidInput("asset batch column 'geom'", f"is not valid WKB: {exc}") from None

    def to_assets(self) -> list[Asset]:
        geoms = self.geometries()
        rows = self.table.drop_columns(["geom"]).to_pylist()
        assets = []
        for row, geom in zip(rows, geoms, strict=True):
            props = row.pop("props")
            assets.append(Asset(geom=geom, props=json.loads(props) if props else {}, **row))
        return assets


def asset_of_row(row: Mapping[str, Any]) -> Asset:
    """One asset from a row of the store's select list (``geom`` as WKB, ``props`` as JSON text), as
    :meth:`AssetBatch.to_assets` makes it, without an Arrow table: for one row that cost more than its query."""
    values = dict(row)
    wkb, props = values.pop("geom"), values.pop("props")
    geom = None if wkb is None else shapely.from_wkb(bytes(wkb))
    return Asset(geom=geom, props=json.loads(props) if props else {}, **values)


def _props_json(asset: Asset) -> str | None:
    if not asset.props:
        return None
    try:
        return json.dumps(asset.props, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"props of asset {asset.id!r}", f"not JSON values: {exc}") from None


def _listed(values: pa.Array | pa.ChunkedArray) -> str:
    shown = [str(v) for v in values[:_SHOWN].to_pylist()]
    more = len(values) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")
