"""The answers of the case routes, declared so the OpenAPI document says what each one holds (the JSON itself is
spelled once, in :mod:`cim.api.case_json`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from cim.api.schemas import GeometryOut


class CaseProperties(BaseModel):
    id: str
    category: str
    category_zh: str
    category_en: str
    code: str = Field(description="the category's code (GB/T 30428.2 layout)")
    source: Literal["sensor", "rule", "hotline", "inspector", "manual"]
    severity: Literal["normal", "urgent", "critical"]
    state: Literal["reported", "filed", "dispatched", "in_progress", "handled", "verified", "closed"]
    resolution: Literal["resolved", "dismissed", "cleared"] | None
    title: str
    unit_id: str | None
    unit_name: str | None
    district: str | None
    street: str | None
    grid_cell: str | None
    level: Literal["grid_cell", "street", "district", "city"] = Field(description="who oversees it now")
    reported_at: str
    deadline: str
    filed_at: str | None
    dispatched_at: str | None
    handled_at: str | None
    closed_at: str | None
    overdue: bool
    version: int = Field(description="name it in a transition: 409 when the case changed meanwhile")
    dispatched_by_machine: bool
    reopened: int


class CaseFeatureOut(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: GeometryOut | None
    properties: CaseProperties


class CaseCollectionOut(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[CaseFeatureOut]
    numberReturned: int
    numberMatched: int | None = None
    timeStamp: str


class CaseDetailProperties(CaseProperties):
    description: str
    reporter: str | None
    asset_ids: list[str]
    alert_ids: list[str]
    allowed_actions: list[str]


class CaseEventOut(BaseModel):
    seq: int
    action: str
    from_state: str | None
    to_state: str
    actor: str
    unit_id: str | None
    at: str
    note: str
    photos: list[str] = Field(description="URLs of the step's photos")
    data: dict[str, Any]
    hash: str = Field(description="sha256 chaining this step to the one before")


class CaseAssetOut(BaseModel):
    id: str
    kind: str
    name: str | None


class CaseDetailOut(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: GeometryOut | None
    properties: CaseDetailProperties
    timeline: list[CaseEventOut]
    assets: list[CaseAssetOut]


class CategoryOut(BaseModel):
    id: str
    code: str
    zh: str
    en: str
    hours: float = Field(description="time to handle a normal case")


class UnitOut(BaseModel):
    id: str
    name: str
    name_en: str | None
    categories: list[str]
    areas: list[str] = Field(description="area codes; none: the whole city")
    reports_to: str | None
    level: str | None


class HeatOut(BaseModel):
    level: Literal["grid_cell", "street", "district"]
    counts: dict[str, int] = Field(description="area code → open cases")
    overdue: dict[str, int] = Field(description="area code → open cases past their deadline")


class AssessmentRowOut(BaseModel):
    level: str
    code: str
    name: str | None
    name_en: str | None
    opened: int
    filed: int
    dispatched: int
    dispatched_by_machine: int
    machine_share: float | None
    handled: int
    handled_on_time: int
    on_time_rate: float | None
    closed: int
    reopened: int
    overdue_open: int
    mean_dispatch_s: float | None
    p90_dispatch_s: float | None
    mean_handle_s: float | None
    p90_handle_s: float | None
    mean_close_s: float | None
    p90_close_s: float | None


class AssessmentOut(BaseModel):
    level: str
    start: str
    end: str
    parent: str | None
    rows: list[AssessmentRowOut]
