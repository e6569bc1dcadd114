"""Layer mappings: how the features of one GIS layer become assets. Data, not code.

A mapping names the asset kind, which source attribute feeds which model field, the source's units, and defaults.
It is written in TOML (``--map mapping.toml`` or a pipeline's source table) or taken from a built-in preset::

    kind = "pipe"
    id = "name"
    [fields]
    diameter_mm = "diameter"
    [units]
    diameter_mm = "m"          # the source gives metres; the model keeps millimetres
    [defaults]
    network = "water"
    depth_m = 1.2

Every source attribute not mapped to a field is kept in the asset's ``props``. ``parent_id`` takes the parent's
full asset id as written (e.g. a lift layer's ``building_id`` = ``"blocks:B17"``).

Ids are ``<prefix>:<id attribute>``, the prefix being the file's name up to its first dot (and ``:<layer>`` when a
layer is named) unless ``id_prefix`` sets it: a city's grid layer, whatever its file is called, gives ``area:<code>``
with ``id_prefix = "area"``. ``fields.kind`` names an attribute giving each feature's kind (an administrative layer
holding districts, streets and grid cells); ``kind`` is then the kind of a feature whose attribute is empty, and a
feature whose attribute names no kind, or one handled otherwise than ``kind`` (another shape of geometry, other
typed columns), is rejected as ``unknown_kind``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cim.errors import InvalidInput
from cim.model import Kind

#: Model fields a layer attribute may feed.
ModelField = Literal[
    "kind",
    "name",
    "parent_id",
    "install_date",
    "status",
    "material",
    "height_m",
    "storeys",
    "network",
    "diameter_mm",
    "depth_m",
]
LengthUnit = Literal["m", "cm", "mm", "ft", "in"]
DateUnit = Literal["iso", "epoch_ms", "epoch_s", "year"]

#: Metres per unit.
METRES_PER: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "ft": 0.3048, "in": 0.0254}
#: The unit the model keeps each length field in.
MODEL_UNITS: dict[str, str] = {"height_m": "m", "depth_m": "m", "diameter_mm": "mm"}


class LayerMapping(BaseModel):
    """How one layer's features become assets. See the module docstring for the TOML form."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    layer: str | None = Field(None, description="layer to read; default: the file's only layer")
    where: str | None = Field(None, description='OGR SQL attribute filter, e.g. "building IS NOT NULL"')
    id: list[str] = Field(
        default_factory=list,
        description="attribute(s) giving the id, first non-empty wins; default: the feature's position in the layer",
    )
    id_prefix: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="asset ids' prefix; default: the file's name"
    )
    fields: dict[ModelField, str] = Field(default_factory=dict)
    units: dict[ModelField, LengthUnit | DateUnit] = Field(default_factory=dict)
    defaults: dict[ModelField, Any] = Field(default_factory=dict)
    storey_height_m: float = Field(3.0, gt=0, description="height per storey when only storeys are known")
    optional_fields: bool = Field(False, description="skip mapped attributes the layer lacks (presets)")

    @model_validator(mode="before")
    @classmethod
    def _id_as_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            return {**data, "id": [data["id"]]}
        return data

    @model_validator(mode="after")
    def _units_fit_fields(self) -> LayerMapping:
        if "kind" in self.defaults:
            raise ValueError("defaults.kind: the kind of a feature with no kind attribute is the mapping's kind")
        for name, unit in self.units.items():
            is_date = unit in ("iso", "epoch_ms", "epoch_s", "year")
            if name == "install_date" and not is_date:
                raise ValueError(f"units.install_date must be one of iso, epoch_ms, epoch_s, year, not {unit!r}")
            if name in MODEL_UNITS and is_date:
                raise ValueError(f"units.{name} must be a length unit (m, cm, mm, ft, in), not {unit!r}")
            if name not in MODEL_UNITS and name != "install_date":
                raise ValueError(f"units.{name}: {name} has no unit")
        return self


PRESETS: dict[str, LayerMapping] = {
    "osm-buildings": LayerMapping(
        kind=Kind.BUILDING,
        layer="multipolygons",
        where="building IS NOT NULL",
        id=["osm_way_id", "osm_id"],
        fields={"name": "name", "height_m": "height", "storeys": "building:levels"},
        optional_fields=True,
    ),
    "osm-parks": LayerMapping(
        kind=Kind.PARK,
        layer="multipolygons",
        where="leisure = 'park'",
        id=["osm_way_id", "osm_id"],
        fields={"name": "name"},
        optional_fields=True,
    ),
    "osm-bus-stops": LayerMapping(
        kind=Kind.TRANSIT_STOP,
        layer="points",
        where="highway = 'bus_stop'",
        id=["osm_id"],
        fields={"name": "name"},
        optional_fields=True,
    ),
    "pipes": LayerMapping(
        kind=Kind.PIPE,
        id=["id", "name"],
        optional_fields=True,
        fields={
            "name": "name",
            "network": "network",
            "diameter_mm": "diameter_mm",
            "material": "material",
            "install_date": "install_year",
            "depth_m": "depth_m",
            "status": "status",
        },
        units={"install_date": "year"},
    ),
}


def preset(name: str) -> LayerMapping:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidInput(f"preset {name!r}", f"unknown; presets: {', '.join(PRESETS)}") from None


def load_mapping(path: Path) -> LayerMapping:
    """A mapping from a TOML file; ``preset = "name"`` at the top starts from a preset and overrides it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"mapping {path}", "no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"mapping {path}", f"is not valid TOML: {exc}") from None
    return mapping_from_dict(data, origin=str(path))


def mapping_from_dict(data: dict[str, Any], *, origin: str) -> LayerMapping:
    data = dict(data)
    base = data.pop("preset", None)
    if base is not None:
        data = {**preset(str(base)).model_dump(exclude_defaults=True), **data}
    try:
        return LayerMapping.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'mapping'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"mapping {origin}", problems) from None
