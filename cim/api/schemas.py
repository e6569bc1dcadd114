"""Response schemas of the API (``Out`` suffix) and the error answers each operation documents.

These describe what the handlers already send; the OpenAPI document (``/api``) is built from them, and
schemathesis (tests/api/test_openapi.py) checks every answer against it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

GEOJSON = "application/geo+json"

#: What ``as_of`` means wherever it is taken (issue 26), in both of the interface's languages.
AS_OF_DESCRIPTION = (
    "The model as it stood at the end of this day (UTC), YYYY-MM-DD; ages are counted to it. Default: today, the "
    "current model. A day in the future or before the model's history begins is a 400. / "
    "按该日（UTC）结束时的模型状态作答，格式 YYYY-MM-DD，年龄也计算到该日；缺省为今天，即当前模型。"
    "未来的日期或早于模型历史起点的日期返回 400。"
)
#: The ``as_of`` query parameter (read by :func:`cim.queries.params.store_as_of`).
AsOfParam = Annotated[str | None, Query(description=AS_OF_DESCRIPTION, json_schema_extra={"format": "date"})]


class ErrorOut(BaseModel):
    """Every error answer: the OGC API exception shape (``code``, ``description``) with its two halves."""

    code: str = Field(description="the kind of error, e.g. InvalidInput, NotFound, Unauthorized")
    description: str = Field(description="what, then why, for people")
    what: str = Field(description="what the client sent that the error is about")
    why: str = Field(description="why it was refused")


class LinkOut(BaseModel):
    href: str
    rel: str
    type: str | None = None
    title: str | None = None


class LandingOut(BaseModel):
    title: str
    description: str
    links: list[LinkOut]


class ConformanceOut(BaseModel):
    conformsTo: list[str]


class SpatialExtentOut(BaseModel):
    bbox: list[list[float]]
    crs: str | None = None


class TemporalExtentOut(BaseModel):
    interval: list[list[str | None]]


class ExtentOut(BaseModel):
    spatial: SpatialExtentOut
    temporal: TemporalExtentOut


class CollectionOut(BaseModel):
    id: str
    title: str
    description: str
    itemType: Literal["feature"]
    crs: list[str]
    extent: ExtentOut
    links: list[LinkOut]


class CollectionsOut(BaseModel):
    collections: list[CollectionOut]
    links: list[LinkOut]


class _ObjectSchemaOut(BaseModel):
    """A JSON Schema of an object a collection publishes."""

    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(alias="$schema")
    id_: str = Field(alias="$id")
    type: Literal["object"]
    title: str
    description: str
    properties: dict[str, dict[str, Any]]


class QueryablesOut(_ObjectSchemaOut):
    """A JSON Schema of the properties a filter may use (and the draft ``queryables`` list GDAL reads)."""

    additionalProperties: bool
    queryables: list[dict[str, str]]


class FeatureSchemaOut(_ObjectSchemaOut):
    """A JSON Schema of a collection's features (its properties, or a whole GeoJSON feature)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")


class GeometryOut(BaseModel):
    """A GeoJSON geometry in lon/lat (CRS84)."""

    type: Literal["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
    coordinates: list[Any]


class FeatureOut(BaseModel):
    """An asset as a GeoJSON feature: the base and typed columns of its kind, then each property-set key as a
    property (``props.<key>`` when the key is a column's name)."""

    type: Literal["Feature"]
    id: str
    geometry: GeometryOut | None
    properties: dict[str, Any]
    links: list[LinkOut] | None = None


class FeatureCollectionOut(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[FeatureOut]
    links: list[LinkOut]
    numberMatched: int | None = Field(None, description="features on all pages (null only where not counted)")
    numberReturned: int
    timeStamp: str


class AssetRefOut(BaseModel):
    id: str
    kind: str
    name: str | None


class StateOut(BaseModel):
    time: str
    value: float | None
    status: str | None


class AlertDetailsOut(BaseModel):
    """What an alert is about, for a list or a wall to show without looking the sensor up; ``null`` where it does
    not apply (no threshold for a status alert) or is not known (an asset without a name or outside every
    area)."""

    quantity: str | None = None
    unit: str | None = None
    threshold: float | None = None
    condition: str | None = None
    status: str | None = None
    asset_name: str | None = None
    street: str | None = None
    district: str | None = None
    sensors: list[str] = []
    message_zh: str | None = None


class AlertOut(BaseModel):
    id: int | str
    rule: str
    sensor_id: str
    asset_id: str | None
    severity: str  # info, warning or critical
    message: str
    value: float | None
    opened_at: str
    closed_at: str | None
    open: bool
    details: AlertDetailsOut


class AreasOut(BaseModel):
    grid_cell: str | None
    street: str | None
    district: str | None


class AssetDetailOut(BaseModel):
    asset: FeatureOut
    parents: list[AssetRefOut]
    children: list[AssetRefOut]
    children_truncated: bool
    latest_state: dict[str, StateOut]
    alerts: list[dict[str, Any]] = Field(description="open alerts, as the alert hook gives them (AlertOut with IoT)")
    areas: AreasOut | None = Field(None, description="the grid cell, street and district the asset stands in")


class ReadingOut(BaseModel):
    time: str
    value: float | None
    status: str | None


class SensorOut(BaseModel):
    id: str
    parent_id: str | None
    parent_kind: str | None
    quantity: str | None
    unit: str | None
    thresholds: dict[str, Any]
    latest: ReadingOut | None


class SensorReadingsOut(BaseModel):
    sensor_id: str
    quantity: str | None
    unit: str | None
    readings: list[ReadingOut]


class ReadingsAcceptedOut(BaseModel):
    accepted: int = Field(description="readings taken in")
    dropped: dict[str, int] = Field(description="readings refused, per reason (the first messages in errors)")
    errors: list[str]


class IotStatsOut(BaseModel):
    """Ingest counters; other counters may be added."""

    model_config = ConfigDict(extra="allow")

    sensors: int
    sensors_reporting: int
    received: int
    accepted: int
    dropped: dict[str, int]
    dropped_total: int
    stored: int


#: What each error status means, for the OpenAPI document.
_MEANING = {
    400: "The request is malformed: a parameter or body the server cannot use (the answer says which)",
    401: "No valid bearer token (Authorization: Bearer <CIM_WRITE_TOKEN>)",
    403: "Refused: writes are disabled while the server has no write token, or a unit acts on another unit's case",
    404: "No such resource",
    409: "The case is not in a state that allows the action, or it changed meanwhile (the answer names the allowed "
    "actions and the current state and version)",
    413: "The request body is over the server's limit",
    500: "The server failed; the answer names nothing internal (see the server log)",
    503: "The server is busy or a dependency (the store, a renderer) is unavailable; try again (Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of the error answers an operation may give, with the :class:`ErrorOut` body;
    any operation may answer 500 (a failure) or 503 (busy, or the store is down).

    >>> sorted(errors(404))
    [404, 500, 503]
    """
    every = {*statuses, 500, 503}
    return {status: {"model": ErrorOut, "description": _MEANING[status]} for status in sorted(every)}
