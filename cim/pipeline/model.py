"""Pipeline files (``pipelines/*.toml``): which sources make a city, where it is stored and published. Data, not code.

::

    name = "shanghai-demo"
    store = "data/shanghai.duckdb"          # relative paths are relative to the working directory
    tiles = "tiles/shanghai"

    [synth]                                 # the demo city generator; its layers and towers join the sources
    out = "data/synth"
    buildings = 20000
    seed = 7
    towers = 3

    [[gis]]                                 # a GIS layer with its mapping (map / preset / kind / inline mapping)
    path = "../shared/data/gis/INFRA_Hydrants.geojson"
    map = "mappings/cambridge-hydrants.toml"     # relative to this pipeline file

    valid_from = "2023-06-30"               # optional: what it holds was so from that day (UTC midnight) on

    [[cityjson]]
    path = "../shared/data/cityjson/rotterdam_subset.city.json"
    crs = "EPSG:7415"

    [[citygml]]                             # CityGML 1.0–3.0, .gml / .xml / .gz; crs only where it has no srsName
    path = "../shared/data/citygml/Building_and_garage_LOD2-EPSG25832.v3.gml"

    [[ifc]]
    path = "../shared/data/ifc/AC20-FZK-Haus.ifc"
    place = [121.5, 31.23, 4.0, 30.0]       # lon, lat, height, rotation° — only for files without georeference

    [[links]]                               # this IFC building is that GIS building (else matched by footprint)
    gis = "buildings:B17"
    ifc = "AC20-FZK-Haus.ifc"               # or the IfcBuilding's GlobalId

    [[sensors]]                             # a sensor bound to the asset it watches (default place: the asset's)
    id = "wl-underpass-1"
    parent = "nodes:ND-NBD-0000001"
    quantity = "water_level"
    unit = "m"
    thresholds = { above = 0.8, stale_s = 900 }

    [[rules]]                               # thresholds for every sensor of a quantity (its own ones win)
    quantity = "gas_pressure"
    below = 150
    severity = "critical"

    [[places]]                              # named places for the viewer's guided tour
    name = "Lujiazui"
    name_zh = "陆家嘴"
    lon = 121.5055
    lat = 31.2397

    [[units]]                               # a responsible unit: categories × areas (none: the whole city)
    id = "sh-gas"
    name = "上海燃气集团"
    name_en = "Shanghai Gas Group"
    categories = ["gas_leak"]

    [[units]]                               # a template: one unit per district ({code} {name} {name_en} {parent})
    per = "district"
    id = "gas-{code}"
    name = "{name}燃气公司"
    categories = ["gas_leak"]
    reports_to = "sh-gas"

    [[case_rules]]                          # alerts that open (or join) cases: see cim.cases.rules
    quantity = "gas_pressure"
    category = "gas_leak"
    severity = { warning = "urgent", critical = "critical" }
    join_distance_m = 200
    join_window_s = 3600

    [[tilesets]]                            # an existing 3D Tiles tileset shown beside the city (cim.tiling.external)
    name = "lujiazui-mesh"                  # a slug: served at /tiles/<city>/external/<name>/…
    path = "meshes/lujiazui"                # a folder holding tileset.json (relative to this file), or
    # url = "http://127.0.0.1:9000/mesh/tileset.json"   # a tileset served on this machine
    place = [121.505, 31.236, 0.0, 30.0]    # optional: lon, lat, height, heading° of its local frame (or matrix =
                                            # 16 numbers, column-major as 3D Tiles)
    title = "Lujiazui reality mesh"
    title_zh = "陆家嘴实景模型"

    [cases]
    require_all_categories = false          # true: every category needs a unit everywhere, not only declared ones
    deadline_scale = 1.0                    # every deadline × this (the demo runs a day of deadlines in minutes)

A key the model does not know is an error that names the key and its line (a typo must not be ignored).
"""

from __future__ import annotations

import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cim.errors import InvalidInput


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthSource(_Strict):
    out: str = "data/synth"
    buildings: int = Field(20_000, ge=1)
    seed: int = 7
    towers: int = Field(3, ge=0, le=8)
    landmarks: bool = Field(True, description="generate Lujiazui's landmark towers as BIM (cim.synth.landmarks)")
    include: bool = Field(True, description="ingest every generated layer and tower")


class GisSource(_Strict):
    path: str
    optional: bool = Field(False, description="skip quietly when the file is not there")
    layer: str | None = None
    map: str | None = None
    preset: str | None = None
    kind: str | None = None
    mapping: dict[str, Any] | None = None
    crs: str | None = None
    valid_from: date | None = Field(
        None, description="the day (YYYY-MM-DD) the source's content was so: it is recorded in the history then"
    )

    @model_validator(mode="after")
    def _one_mapping(self) -> GisSource:
        given = [k for k in ("map", "preset", "kind", "mapping") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of map, preset, kind or mapping (got {', '.join(given) or 'none'})")
        return self


class CityJsonSource(_Strict):
    path: str
    optional: bool = Field(False, description="skip quietly when the file is not there")
    crs: str | None = None
    valid_from: date | None = Field(
        None, description="the day (YYYY-MM-DD) the source's content was so: it is recorded in the history then"
    )


class CityGmlSource(CityJsonSource):
    """A CityGML file: the options of a CityJSON file (``crs`` for a file without ``srsName``)."""


class IfcSource(_Strict):
    path: str
    optional: bool = Field(False, description="skip quietly when the file is not there")
    place: tuple[float, float, float, float] | tuple[float, float, float] | None = None
    valid_from: date | None = Field(
        None, description="the day (YYYY-MM-DD) the source's content was so: it is recorded in the history then"
    )


class Thresholds(_Strict):
    """When a sensor's reading raises an alert (see :mod:`cim.iot.rules`)."""

    above: float | None = None
    below: float | None = None
    status: list[str] | None = Field(None, description="status values that raise an alert, e.g. ['fault']")
    stale_s: float | None = Field(None, gt=0, description="no reading for this many seconds raises an alert")
    severity: Literal["info", "warning", "critical"] | None = None

    def as_props(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SensorSource(_Strict):
    """A sensor declared in the pipeline, bound to the asset it watches (``parent``)."""

    id: str
    parent: str
    quantity: str
    unit: str | None = None
    name: str | None = None
    lon: float | None = Field(None, ge=-180, le=180)
    lat: float | None = Field(None, ge=-90, le=90)
    thresholds: Thresholds | None = None


class RuleSource(Thresholds):
    """Thresholds for every sensor measuring ``quantity``; a sensor's own thresholds win where both say."""

    quantity: str


class Place(_Strict):
    name: str
    name_zh: str | None = Field(None, description="the Chinese name (陆家嘴), shown and searched too")
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    height: float = 1500.0
    heading: float = 0.0
    pitch: float = -35.0


class LinkSource(_Strict):
    """An explicit BIM ↔ GIS match: the GIS building's id and the IFC building's GlobalId or the IFC file name."""

    gis: str
    ifc: str
    prefer: Literal["gis", "bim"] = "gis"


class MergeOptions(_Strict):
    enabled: bool = True
    prefer: Literal["gis", "bim"] = Field("gis", description="whose value wins when GIS and BIM attributes differ")


class UnitSource(_Strict):
    """A responsible unit, or with ``per`` a template of one unit per area of that level (:mod:`cim.cases.dispatch`)."""

    id: str
    name: str | None = None
    name_en: str | None = None
    categories: list[str] = Field(min_length=1)
    areas: list[str] | None = Field(None, description="area codes at any level; none: the whole city")
    reports_to: str | None = None
    per: Literal["district", "street", "grid_cell"] | None = None


class CaseRuleSource(_Strict):
    """Alerts that open or join cases (:mod:`cim.cases.rules`)."""

    id: str | None = None
    category: str
    quantity: str | None = None
    rule_prefix: str | None = None
    alert_severity: list[str] | None = None
    conditions: list[str] | None = Field(None, description="default: above, below, status (not stale); [] any")
    severity: dict[str, str] | None = Field(None, description="alert severity → case severity")
    join_distance_m: float = Field(200.0, ge=0)
    join_window_s: float = Field(3600.0, ge=0)


class CaseOptions(_Strict):
    require_all_categories: bool = False
    deadline_scale: float = Field(1.0, gt=0, le=1000, description="every deadline × this (the demo: a day in minutes)")


class TargetsSource(_Strict):
    """The plan's targets this city is tracked against (:mod:`cim.queries.targets`): a target file and the share
    of the city the model covers."""

    file: str
    scale: float | None = Field(None, gt=0, description="overrides the file's scale")


class TilesetMount(_Strict):
    """An existing 3D Tiles tileset mounted beside the city's (:mod:`cim.tiling.external`)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", description="a slug: lower-case letters, digits, -")
    path: str | None = Field(None, description="a folder holding tileset.json, relative to the pipeline file")
    url: str | None = Field(None, description="a tileset JSON served on this machine (localhost, 127.0.0.1, ::1)")
    place: tuple[float, float, float, float] | tuple[float, float, float] | None = Field(
        None, description="lon, lat, height (ellipsoidal m), heading° of the tileset's local east-north-up frame"
    )
    matrix: tuple[float, ...] | None = Field(None, description="16 numbers: a column-major transform, as 3D Tiles")
    title: str | None = None
    title_zh: str | None = None

    # a rule on one field is that field's validator, so that its error names the field and its line
    @field_validator("url")
    @classmethod
    def _local_url(cls, url: str | None) -> str | None:
        if url is not None:
            from cim.tiling.external_check import check_local_url

            try:
                check_local_url(url)
            except InvalidInput as exc:
                raise ValueError(exc.why) from None
        return url

    @field_validator("matrix")
    @classmethod
    def _sixteen(cls, matrix: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if matrix is not None and len(matrix) != 16:
            raise ValueError(f"matrix has {len(matrix)} numbers; a 4×4 transform has 16")
        return matrix

    @field_validator("place")
    @classmethod
    def _on_earth(cls, place: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if place is not None and not (-180 <= place[0] <= 180 and -90 <= place[1] <= 90):
            raise ValueError("place is lon, lat (degrees), height, heading°: lon or lat out of range")
        return place

    @model_validator(mode="after")
    def _one_place(self) -> TilesetMount:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of path or url")
        if self.place is not None and self.matrix is not None:
            raise ValueError("give place or matrix, not both")
        return self


class Pipeline(_Strict):
    name: str
    store: str = "data/city.duckdb"
    tiles: str | None = None
    synth: SynthSource | None = None
    gis: list[GisSource] = Field(default_factory=list)
    cityjson: list[CityJsonSource] = Field(default_factory=list)
    citygml: list[CityGmlSource] = Field(default_factory=list)
    ifc: list[IfcSource] = Field(default_factory=list)
    sensors: list[SensorSource] = Field(default_factory=list)
    rules: list[RuleSource] = Field(default_factory=list)
    places: list[Place] = Field(default_factory=list)
    links: list[LinkSource] = Field(default_factory=list)
    merge: MergeOptions = Field(default_factory=MergeOptions)
    units: list[UnitSource] = Field(default_factory=list)
    case_rules: list[CaseRuleSource] = Field(default_factory=list)
    cases: CaseOptions = Field(default_factory=CaseOptions)
    targets: TargetsSource | None = None
    tilesets: list[TilesetMount] = Field(default_factory=list)
    #: Directory of the pipeline file; paths of sources and mappings are relative to it.
    base: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_mounts(self) -> Pipeline:
        first: dict[str, int] = {}
        for index, tileset in enumerate(self.tilesets):
            if tileset.name in first:
                # ``at``: the entry the error is about, so that load_pipeline names its field and line
                raise PydanticCustomError(
                    "duplicate_name",
                    "the name {name} is given twice (first as tilesets.{first}.name)",
                    {"name": tileset.name, "first": first[tileset.name], "at": ("tilesets", index, "name")},
                )
            first[tileset.name] = index
        return self

    def resolve(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else self.base / candidate


def load_pipeline(path: Path) -> Pipeline:
    """Read and check a pipeline file; every problem names the file, the key and, where it can, the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"pipeline {path}", "no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"pipeline {path}", "is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"pipeline {path}", f"is not valid TOML: {exc}") from None
    try:
        return Pipeline.model_validate({**data, "base": path.parent})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            at = (error.get("ctx") or {}).get("at") or error["loc"]  # a model-wide rule names its entry in ``at``
            line = _line_of(text, tuple(at))
            where = ".".join(str(p) for p in at) + (f" (line {line})" if line else "")
            message = "unknown key (a typo?)" if error["type"] == "extra_forbidden" else error["msg"]
            problems.append(f"{where}: {message}")
        raise InvalidInput(f"pipeline {path}", "; ".join(problems)) from None


def _line_of(text: str, location: tuple[str | int, ...]) -> int | None:
    r"""The line of ``text`` (a pipeline file) that ``location`` (a pydantic error's, e.g. ``("tilesets", 2, "name")``)
    points at: the key's own line, else the nearest enclosing one that is written (the ``[[tilesets]]`` header of
    the third entry when its name is missing), else None.

    >>> _line_of('name = "p"\n[[tilesets]]\nname = "a"\n[[tilesets]]\nname = "B"\n', ("tilesets", 1, "name"))
    5
    """
    written = [(len(path), line) for path, line in _key_lines(text) if tuple(location[: len(path)]) == path]
    longest = max((length for length, _ in written), default=0)
    return next((line for length, line in written if length == longest), None) if longest else None


_KEY = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*"""
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_KEY})\s*\]\]?\s*(#.*)?$")  # not ``[3, 4]`` in a multi-line array
_ASSIGNMENT = re.compile(rf"^\s*({_KEY})\s*=")


def _key_lines(text: str) -> list[tuple[tuple[str | int, ...], int]]:
    """Every table header and key of a TOML text with its full path (an array of tables' entries numbered from 0,
    as pydantic numbers them) and its line (from 1). Lines inside multi-line strings are skipped."""
    found: list[tuple[tuple[str | int, ...], int]] = []
    counts: dict[tuple[str | int, ...], int] = {}
    table: tuple[str | int, ...] = ()
    in_string, depth = "", 0  # inside a multi-line string; how deep inside a multi-line array or inline table
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string:
            if line.count(in_string) % 2:
                in_string = ""
            continue
        if depth > 0:
            depth += _opened(line)
            continue
        header = _HEADER.match(line)
        if header:
            parts = _dotted(header.group(2))
            table = ()
            for part in parts[:-1] if header.group(1) == "[[" else parts:
                table += (part,)
                if table in counts:  # inside the latest entry of an array of tables
                    table += (counts[table] - 1,)
            if header.group(1) == "[[":
                table += (parts[-1],)
                counts[table] = counts.get(table, 0) + 1
                table += (counts[table] - 1,)
            found.append((table, number))
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment:
            found.append((table + tuple(_dotted(assignment.group(1))), number))
            value = line[assignment.end() :]
            for quotes in ('"""', "'''"):
                if value.count(quotes) % 2:
                    in_string = quotes
            depth = 0 if in_string else _opened(value)
    return found


def _opened(value: str) -> int:
    """Brackets and braces opened less those closed on a line, strings and comments left out."""
    bare = re.sub(r"\"(?:\\.|[^\"\\])*\"|'[^']*'", "", value).partition("#")[0]
    return sum(bare.count(c) for c in "[{") - sum(bare.count(c) for c in "]}")


def _dotted(key: str) -> list[str]:
    """The parts of a dotted TOML key, quotes taken off (``a."b.c"`` → a, b.c)."""
    return [part.strip().strip("\"'") for part in re.findall(r"\"[^\"]*\"|'[^']*'|[^.]+", key)]
