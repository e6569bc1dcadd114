"""Turning a batch of layer features into a batch of assets, column by column, by a :class:`LayerMapping`."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from cim.errors import InvalidInput
from cim.gis.mapping import METRES_PER, MODEL_UNITS, LayerMapping
from cim.gis.quality import AREA_KINDS, Findings, areas_only, clean_geometries
from cim.gis.readers import FeatureBatch
from cim.model import KIND_FIELDS, AssetBatch, Kind

OSM_TAGS = "other_tags"  # GDAL's OSM driver packs the tags it has no column for here: "k"=>"v","k2"=>"v2"
_OSM_TAG = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')
_NUMBER = r"^\s*([-+]?\d+(?:[.,]\d+)?)"
_EARLIEST_YEAR = 1800
#: Beyond these a value is no real asset's (the tallest building has 163 storeys, the deepest mine is 4 km deep, the
#: widest pipe is a few metres across): dropped as implausible, so a stray 1e300 never reaches a z range.
_MOST_STOREYS = 1_000
_LONGEST_M = 100_000.0
_TEXT_FIELDS = ("name", "parent_id", "status", "material", "network")


def check_fields(mapping: LayerMapping, fields: tuple[str, ...], where: str) -> None:
    """Every attribute the mapping names must exist in the layer (unless the mapping's fields are optional)."""
    if mapping.optional_fields:
        return
    has_tags = OSM_TAGS in fields
    wanted = [*mapping.fields.values(), *mapping.id]
    missing = [name for name in wanted if name not in fields and not has_tags]
    if missing:
        raise InvalidInput(
            f"mapping field(s) {', '.join(missing)}", f"not in {where}; its fields are: {', '.join(fields)}"
        )


class FeatureMapper:
    """Maps the batches of one layer, remembering ids across batches to catch duplicates."""

    def __init__(self, mapping: LayerMapping, *, id_prefix: str, source: str, today: date | None = None) -> None:
        self.mapping = mapping
        self.id_prefix = id_prefix
        self.source = source
        self.today = today or date.today()
        self.findings = Findings()
        self.features_read = 0
        self._seen: set[str] = set()

    def map(self, batch: FeatureBatch) -> AssetBatch:
        attrs = _with_osm_tags(batch.attributes.to_pandas(types_mapper=pd.ArrowDtype))
        n = len(attrs)
        ids = self._ids(attrs, start=self.features_read)
        self.features_read += n
        geoms, keep = clean_geometries(batch.geometries, ids, self.findings)
        kinds, known = self._kinds(attrs, ids)
        keep &= known
        for kind in np.unique(kinds[keep]):
            rows = kinds == kind
            keep = np.where(rows, areas_only(geoms, keep & rows, Kind(kind), ids, self.findings), keep)
        keep &= self._first_use(ids)
        columns: dict[str, object] = {
            "id": ids,
            "kind": kinds,
            "source": np.full(n, self.source, dtype=object),
        }
        for field in _TEXT_FIELDS:
            columns[field] = self._text(attrs, field)
        for field in ("height_m", "depth_m", "diameter_mm"):
            columns[field] = self._length(attrs, field, ids)
        storeys = self._number(attrs, "storeys", ids)
        if storeys is not None:
            implausible = storeys > _MOST_STOREYS
            self.findings.add("implausible_value", ids[implausible], "storeys")
            storeys[implausible] = np.nan
        columns["storeys"] = None if storeys is None else np.round(storeys)
        columns["install_date"] = self._date(attrs, ids)
        self._derive_heights(columns)
        if columns["storeys"] is not None:
            columns["storeys"] = pd.array(columns["storeys"], dtype="Int32")
        mapped = set(self.mapping.fields.values()) | set(self.mapping.id)
        columns["props"] = _props_json(attrs.drop(columns=[c for c in attrs.columns if c in mapped]))
        columns["geom"] = shapely.to_wkb(geoms)
        table = pa.table({name: _arrow(values, n) for name, values in columns.items() if values is not None})
        return AssetBatch.from_table(table.filter(pa.array(keep)))

    # --- columns ---
    def _ids(self, attrs: pd.DataFrame, *, start: int) -> np.ndarray:
        values = pd.Series([None] * len(attrs), dtype=object)
        for name in self.mapping.id:
            if name in attrs.columns:
                values = values.where(values.notna(), _id_text(attrs[name]))
        position = pd.Series(np.arange(start, start + len(attrs)).astype(str))
        values = values.where(values.notna() & (values != ""), position)
        return (self.id_prefix + ":" + values.astype(str)).to_numpy(dtype=object)

    def _kinds(self, attrs: pd.DataFrame, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each feature's kind (the mapping's, or its ``fields.kind`` attribute's) and a mask of those that are
        usable: a kind handled as the mapping's kind is (:func:`_treatment`)."""
        n = len(attrs)
        kinds = np.full(n, str(self.mapping.kind), dtype=object)
        given = self._text(attrs, "kind")
        if given is None:
            return kinds, np.ones(n, dtype=bool)
        fitting = {str(k) for k in Kind if _treatment(k) == _treatment(self.mapping.kind)}
        named = np.array([v is not None for v in given], dtype=bool)
        kinds[named] = given[named]
        known = np.isin(kinds, list(fitting))
        self.findings.add("unknown_kind", ids[~known], str(self.mapping.kind))
        return kinds, known

    def _first_use(self, ids: np.ndarray) -> np.ndarray:
        keep = np.ones(len(ids), dtype=bool)
        repeated = []
        for i, asset_id in enumerate(ids):
            if asset_id in self._seen:
                keep[i] = False
                repeated.append(asset_id)
            else:
                self._seen.add(asset_id)
        self.findings.add("duplicate_id", np.array(repeated, dtype=object))
        return keep

    def _source(self, attrs: pd.DataFrame, field: str) -> pd.Series | None:
        name = self.mapping.fields.get(field)  # type: ignore[call-overload]
        default = self.mapping.defaults.get(field)  # type: ignore[call-overload]
        if name is not None and name in attrs.columns:
            column = attrs[name]
            return column if default is None else column.where(column.notna(), default)
        if default is not None:
            return pd.Series([default] * len(attrs), index=attrs.index)
        return None

    def _text(self, attrs: pd.DataFrame, field: str) -> np.ndarray | None:
        column = self._source(attrs, field)
        if column is None:
            return None
        text = column.astype(object).where(column.notna(), None)
        return np.array([None if v is None or v == "" else str(v) for v in text], dtype=object)

    def _number(self, attrs: pd.DataFrame, field: str, ids: np.ndarray) -> np.ndarray | None:
        column = self._source(attrs, field)
        if column is None:
            return None
        if pd.api.types.is_numeric_dtype(column.dtype):
            values = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy(na_value=np.nan, copy=True)
            unreadable = np.zeros(len(values), dtype=bool)
        else:  # text such as OSM's "12", "12.5 m", "3,5"
            text = column.astype("string")
            numbers = text.str.extract(_NUMBER, expand=False).str.replace(",", ".")
            values = pd.to_numeric(numbers, errors="coerce").astype("float64").to_numpy(na_value=np.nan, copy=True)
            unreadable = (text.notna() & (text.str.strip() != "")).to_numpy(dtype=bool, na_value=False)
            unreadable &= np.isnan(values)
        unreadable |= np.isinf(values)  # 1e400 in the file: a number, but no length or count
        self.findings.add("unreadable_value", ids[unreadable], field)
        values[np.isinf(values)] = np.nan
        negative = values < 0
        self.findings.add("negative_value", ids[negative], field)
        values[negative] = np.nan
        return values

    def _length(self, attrs: pd.DataFrame, field: str, ids: np.ndarray) -> np.ndarray | None:
        values = self._number(attrs, field, ids)
        if values is None:
            return None
        unit = self.mapping.units.get(field, MODEL_UNITS[field])  # type: ignore[call-overload]
        with np.errstate(over="ignore"):
            converted = values * METRES_PER[unit] / METRES_PER[MODEL_UNITS[field]]
        implausible = converted > _LONGEST_M / METRES_PER[MODEL_UNITS[field]]
        self.findings.add("implausible_value", ids[implausible], field)
        converted[implausible] = np.nan
        return converted

    def _date(self, attrs: pd.DataFrame, ids: np.ndarray) -> pd.Series | None:
        column = self._source(attrs, "install_date")
        if column is None:
            return None
        unit = self.mapping.units.get("install_date", "iso")
        if unit in ("epoch_ms", "epoch_s"):
            numbers = pd.to_numeric(column, errors="coerce").astype("float64")
            stamps = pd.to_datetime(numbers, unit="ms" if unit == "epoch_ms" else "s", errors="coerce")
        elif unit == "year":
            text = column.astype("string").str.extract(r"(-?\d{1,4})", expand=False)
            years = pd.to_numeric(text, errors="coerce").astype("float64")  # float: NaN where missing
            known = years.between(1, 9999)
            stamps = pd.to_datetime({"year": years.where(known, 2000), "month": 1, "day": 1}, errors="coerce").where(
                known
            )
        else:
            stamps = pd.to_datetime(column.astype("string"), errors="coerce", format="mixed")
        stamps = pd.Series(stamps, index=column.index)
        unreadable = (column.notna() & column.astype("string").str.strip().ne("") & stamps.isna()).to_numpy(
            dtype=bool, na_value=False
        )
        self.findings.add("unreadable_value", ids[unreadable], "install_date")
        years = stamps.dt.year
        implausible = ((years < _EARLIEST_YEAR) | (stamps.dt.date > self.today)).to_numpy(dtype=bool, na_value=False)
        self.findings.add("implausible_install_date", ids[implausible])
        return stamps.dt.date.where(~implausible & stamps.notna(), None)

    def _derive_heights(self, columns: dict[str, object]) -> None:
        """Vertical extent: above ground from height (or storeys × storey height); pipes below it from depth."""
        n = len(columns["id"])  # type: ignore[arg-type]
        height = columns.get("height_m")
        storeys = columns.get("storeys")
        if self.mapping.kind is Kind.BUILDING and storeys is not None:
            from_storeys = np.asarray(storeys, dtype="float64") * self.mapping.storey_height_m
            height = from_storeys if height is None else np.where(np.isnan(height), from_storeys, height)  # type: ignore[call-overload]
            columns["height_m"] = height
        depth = columns.get("depth_m")
        if depth is not None and self.mapping.kind in (Kind.PIPE, Kind.NODE):
            diameter = columns.get("diameter_mm")
            diameter_m = np.zeros(n) if diameter is None else np.nan_to_num(np.asarray(diameter, "float64")) / 1000
            top = -np.asarray(depth, dtype="float64")
            columns["z_max"], columns["z_min"] = top, top - diameter_m
        else:
            columns["z_min"] = np.zeros(n)
            columns["z_max"] = np.nan_to_num(np.asarray(height, dtype="float64")) if height is not None else np.zeros(n)
        for name, kinds in KIND_FIELDS.items():  # a column of another kind was only needed to derive z above
            if self.mapping.kind not in kinds:
                columns[name] = None


def _treatment(kind: Kind) -> tuple[object, ...]:
    """What the mapper does differently by kind: areas only, typed columns, heights from storeys or depths. Kinds
    with the same treatment may share one layer (``fields.kind``)."""
    typed = frozenset(name for name, kinds in KIND_FIELDS.items() if kind in kinds)
    special = kind if kind in (Kind.BUILDING, Kind.PIPE, Kind.NODE) else None
    return kind in AREA_KINDS, typed, special


def _id_text(column: pd.Series) -> pd.Series:
    """Ids as text; whole floats (GDAL reads some integer ids as reals) without the '.0'."""
    if pd.api.types.is_float_dtype(column.dtype):
        numbers = column.astype("float64")
        whole = numbers.notna() & (numbers == numbers.round())
        text = numbers.astype(object).where(~whole, numbers.round().astype("Int64").astype(str))
        return text.where(numbers.notna(), None).astype(object).map(lambda v: v if v is None else str(v))
    return column.astype(object).where(column.notna(), None).map(lambda v: v if v is None else str(v))


def _with_osm_tags(attrs: pd.DataFrame) -> pd.DataFrame:
    """Unpack OSM's ``other_tags`` (e.g. ``building:levels``) into columns of their own, so mappings can name them
    and the rest reach ``props`` as separate keys."""
    if OSM_TAGS not in attrs.columns:
        return attrs
    parsed = [dict(_OSM_TAG.findall(text)) if isinstance(text, str) else {} for text in attrs[OSM_TAGS]]
    keys = sorted({key for tags in parsed for key in tags} - set(attrs.columns))
    extra = {key: pd.Series([tags.get(key) for tags in parsed], index=attrs.index, dtype="string") for key in keys}
    return pd.concat([attrs.drop(columns=[OSM_TAGS]), pd.DataFrame(extra, index=attrs.index)], axis=1)


def _props_json(attrs: pd.DataFrame) -> np.ndarray:
    """Every attribute not mapped to a field, as one JSON object per feature."""
    if attrs.columns.empty:
        return np.full(len(attrs), None, dtype=object)
    plain = attrs.astype(object).where(attrs.notna(), None)
    lines = plain.to_json(orient="records", lines=True, date_format="iso", force_ascii=False).splitlines()
    return np.array(lines, dtype=object)


def _arrow(values: object, n: int) -> pa.Array:
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=object, na_value=None)
    if isinstance(values, pd.api.extensions.ExtensionArray):
        return pa.array(values, from_pandas=True)
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return pa.array(array, from_pandas=True)  # NaN → null
    return pa.array(list(array) if array.dtype == object else array, from_pandas=True)
