"""CQL2 filters (OGC API – Features Part 3), text or JSON, as parameterised SQL for either store.

pygeofilter parses; this module walks its tree and writes SQL in which every value the client gave is a bound
parameter and every name is one of the collection's queryables (a typed column of the asset kind, ``geometry``, or
a property-set key the kind has, by its bare name or as ``props.<key>``, compared as its catalogued type: numbers as
numbers, text as text), spelled in the store's :class:`~cim.store.sql.Dialect`. Anything else is an
:class:`~cim.errors.InvalidInput` naming the problem.

>>> from cim.model import Kind
>>> from cim.store.sql import Dialect
>>> f = parse_filter("network = 'gas' AND depth_m > 1.5", lang="cql2-text", kind=Kind.PIPE, dialect=Dialect())
>>> f.sql, f.params
('((network = ?) AND (depth_m > ?))', ['gas', 1.5])
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

import shapely
import shapely.geometry

# pygeofilter builds its lark grammars with debug=True, and lark then logs every unused rule on stderr at import.
logging.getLogger("lark").addFilter(lambda record: record.levelno >= logging.ERROR)

from pygeofilter import ast, values  # noqa: E402
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json  # noqa: E402
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text  # noqa: E402
from shapely.geometry.base import BaseGeometry  # noqa: E402

from cim.errors import InvalidInput  # noqa: E402
from cim.model import Kind, fields_of  # noqa: E402
from cim.queries.checks import checked_geometry  # noqa: E402
from cim.store.sql import Dialect, Where  # noqa: E402

FilterLang = Literal["cql2-text", "cql2-json"]
#: A filter longer than this is refused before parsing (a district polygon fits many times over).
MAX_FILTER_CHARS = 1_000_000
MAX_IN_VALUES = 1_000

#: Columns every kind has, and the SQL type class of every typed column.
BASE_COLUMNS: tuple[str, ...] = ("id", "name", "parent_id", "source", "z_min", "z_max")
NUMERIC = frozenset({"z_min", "z_max", "height_m", "diameter_mm", "depth_m", "storeys"})
DATES = frozenset({"install_date"})
GEOMETRY_NAMES = frozenset({"geometry", "geom"})

_COMPARISONS = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}
_SPATIAL = {
    ast.GeometryIntersects: "ST_Intersects",
    ast.GeometryDisjoint: "ST_Disjoint",
    ast.GeometryContains: "ST_Contains",
    ast.GeometryWithin: "ST_Within",
    ast.GeometryTouches: "ST_Touches",
    ast.GeometryCrosses: "ST_Crosses",
    ast.GeometryOverlaps: "ST_Overlaps",
    ast.GeometryEquals: "ST_Equals",
}


#: Property-set keys a filter may name, by key: their type (``number``, ``string``, ``boolean``, ``date``, ``object``).
PropertyKeys = Mapping[str, str]
PROPS_PREFIX = "props."


def column_type(column: str) -> str:
    return "number" if column in NUMERIC else ("date" if column in DATES else "string")


def queryables(kind: Kind) -> dict[str, str]:
    """The columns a filter on ``kind`` may use (and ``geometry``), with their JSON-schema type."""
    names = {"geometry": "geometry"}
    for column in (*BASE_COLUMNS, *fields_of(kind)):
        names[column] = column_type(column)
    return names


def props_key(name: str, *, columns: set[str] | frozenset[str], keys: PropertyKeys) -> str | None:
    """The ``props`` key a property name means: ``props.<key>``, or a bare name that is no column and is a key of
    ``keys``; None when it names no key."""
    if name.startswith(PROPS_PREFIX) and len(name) > len(PROPS_PREFIX):
        return name.removeprefix(PROPS_PREFIX)
    if name in columns or name in GEOMETRY_NAMES or name in ("id", "props"):
        return None
    return name if name in keys else None


def parse_filter(
    text: str, *, lang: str, kind: Kind, dialect: Dialect, keys: PropertyKeys | None = None, open_keys: bool = False
) -> Where:
    """The CQL2 ``text`` (in ``lang``: ``cql2-text`` or ``cql2-json``) as SQL over the assets of ``kind``.

    ``keys`` are the kind's property-set keys with their types (:mod:`cim.store.catalogue`): a filter naming another
    key is refused, unless ``open_keys`` (the catalogue left keys out), when such a key is compared as the value's
    type. Without ``keys`` only ``props.<key>`` names a key, compared as the value's type."""
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidInput("filter", f"is {len(text):,} characters long; at most {MAX_FILTER_CHARS:,} are accepted")
    if lang not in ("cql2-text", "cql2-json"):
        raise InvalidInput(f"filter-lang {lang!r}", "must be cql2-text or cql2-json")
    try:
        node = parse_cql2_json(json.loads(text)) if lang == "cql2-json" else parse_cql2_text(text)
    except RecursionError:
        raise InvalidInput("filter", "is nested too deeply") from None
    except Exception as exc:  # lark, json and pygeofilter raise many kinds; each is a malformed filter
        raise InvalidInput("filter", f"is not valid {lang}: {_first_line(exc)}") from None
    try:
        return _Translator(kind, dialect, keys, open_keys).condition(node)
    except RecursionError:
        raise InvalidInput("filter", "is nested too deeply") from None


class _Translator:
    def __init__(self, kind: Kind, dialect: Dialect, keys: PropertyKeys | None, open_keys: bool) -> None:
        self.kind = kind
        self.s = dialect
        self.columns = set(BASE_COLUMNS) | set(fields_of(kind))
        self.keys = keys
        self.open_keys = open_keys

    def condition(self, node: Any) -> Where:
        p = self.s.param
        if isinstance(node, ast.And | ast.Or):
            left, right = self.condition(node.lhs), self.condition(node.rhs)
            op = "AND" if isinstance(node, ast.And) else "OR"
            return Where(f"({left.sql} {op} {right.sql})", left.params + right.params)
        if isinstance(node, ast.Not):
            inner = self.condition(node.sub_node)
            return Where(f"(NOT {inner.sql})", inner.params)
        if isinstance(node, ast.Include):
            return Where("FALSE" if node.not_ else "TRUE", [])
        if isinstance(node, ast.Comparison) and type(node) in _COMPARISONS:
            attribute, value, op = node.lhs, node.rhs, _COMPARISONS[type(node)]
            if not isinstance(attribute, ast.Attribute) and isinstance(value, ast.Attribute):
                attribute, value, op = value, attribute, _MIRRORED[op]
            column, kind_of = self.attribute(attribute, value)
            return Where(f"({column.sql} {op} {p})", [*column.params, self.value(value, kind_of, attribute)])
        if isinstance(node, ast.Between):
            column, kind_of = self.attribute(node.lhs, node.low)
            low, high = self.value(node.low, kind_of, node.lhs), self.value(node.high, kind_of, node.lhs)
            negate = "NOT " if node.not_ else ""
            return Where(f"({column.sql} {negate}BETWEEN {p} AND {p})", [*column.params, low, high])
        if isinstance(node, ast.Like):
            column, kind_of = self.attribute(node.lhs, "")
            if kind_of not in ("string", "props-string") or not isinstance(node.pattern, str):
                raise InvalidInput(f"filter LIKE on {_name(node.lhs)}", "needs a text property and a text pattern")
            like = ("NOT " if node.not_ else "") + ("ILIKE" if node.nocase else "LIKE")
            return Where(f"({column.sql} {like} {p})", [*column.params, _text(node.pattern, _name(node.lhs))])
        if isinstance(node, ast.In):
            if len(node.sub_nodes) > MAX_IN_VALUES:
                raise InvalidInput("filter IN list", f"has {len(node.sub_nodes):,} values; at most {MAX_IN_VALUES}")
            if not node.sub_nodes:
                return Where("TRUE" if node.not_ else "FALSE", [])
            column, kind_of = self.attribute(node.lhs, node.sub_nodes[0])
            items = [self.value(v, kind_of, node.lhs) for v in node.sub_nodes]
            negate = "NOT " if node.not_ else ""
            return Where(f"({column.sql} {negate}IN ({', '.join([p] * len(items))}))", [*column.params, *items])
        if isinstance(node, ast.IsNull):
            column, _ = self.attribute(node.lhs, None)
            return Where(f"({column.sql} IS {'NOT ' if node.not_ else ''}NULL)", column.params)
        if isinstance(node, ast.SpatialComparisonPredicate) and type(node) in _SPATIAL:
            return self.spatial(node)
        name = type(node).__name__
        raise InvalidInput(
            f"filter operator {name}",
            "is not supported here; use comparisons, LIKE, BETWEEN, IN, "
            "IS NULL, AND/OR/NOT and the S_* spatial functions",
        )

    def spatial(self, node: ast.SpatialComparisonPredicate) -> Where:
        attribute, other = node.lhs, node.rhs
        if not isinstance(attribute, ast.Attribute):
            attribute, other = other, attribute
        if not isinstance(attribute, ast.Attribute) or attribute.name not in GEOMETRY_NAMES:
            raise InvalidInput(f"filter {type(node).__name__}", "compares the geometry property with a geometry value")
        geom = _geometry(other)
        function = _SPATIAL[type(node)]
        exact = f"{function}(geom, {self.s.geom_param()})"
        if isinstance(node, ast.GeometryDisjoint):
            return Where(f"({exact})", [shapely.to_wkb(geom)])
        p = self.s.param
        west, south, east, north = geom.bounds  # every other predicate implies the bounding boxes meet
        prune = f"max_x >= {p} AND min_x <= {p} AND max_y >= {p} AND min_y <= {p}"
        return Where(f"({prune} AND {exact})", [west, east, south, north, shapely.to_wkb(geom)])

    def attribute(self, node: Any, value: Any) -> tuple[Where, str]:
        """The SQL of a property and its type class: ``number``, ``date``, ``string`` or ``boolean``."""
        name = _name(node)
        if "\x00" in name:
            raise InvalidInput(f"filter property {name!r}", "contains a NUL character, which no property name holds")
        if name in self.columns:
            return Where(name, []), column_type(name)
        key = props_key(name, columns=self.columns, keys=self.keys or {})
        if key is not None:
            typed = self.keys.get(key) if self.keys is not None else None
            if typed is None and self.keys is not None and not self.open_keys:
                raise InvalidInput(
                    f"filter property {name!r}", f"is not a property of {self.kind} assets (see its queryables)"
                )
            if typed == "object":
                raise InvalidInput(f"filter property {name!r}", "holds objects or lists, which cannot be compared")
            if typed is None:  # a key the catalogue does not list: compared as the value's type
                numeric = isinstance(value, int | float) and not isinstance(value, bool)
                typed = "number" if numeric else "string"
            # a props value is text in the store: a date or a boolean compares as its text (ISO dates sort as dates)
            return self.s.props_value(key, numeric=typed == "number"), "props-" + typed
        if name in GEOMETRY_NAMES:
            raise InvalidInput(f"filter property {name!r}", "is the geometry; compare it with S_INTERSECTS and kin")
        known = ", ".join(sorted(self.columns))
        raise InvalidInput(
            f"filter property {name!r}",
            f"does not exist on {self.kind} assets; use one of {known}, geometry, or a key of its queryables",
        )

    def value(self, node: Any, kind_of: str, attribute: Any) -> Any:
        name = _name(attribute)
        if isinstance(node, (ast.Node, values.Geometry | values.Envelope | values.Interval)):
            raise InvalidInput(f"filter on {name}", "compares a property with a literal value only")
        if kind_of.startswith("props-"):
            return self.props_value(node, kind_of.removeprefix("props-"), name)
        if kind_of == "number":
            if isinstance(node, bool) or not isinstance(node, int | float):
                raise InvalidInput(f"filter on {name}", f"{name} is a number; got {node!r}")
            return node
        if kind_of == "date":
            if isinstance(node, datetime):
                return node.date()
            if isinstance(node, date):
                return node
            if isinstance(node, str):
                return _date(node, name)
            raise InvalidInput(f"filter on {name}", f"{name} is a date; got {node!r}")
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, str):
            return _text(node, name)
        raise InvalidInput(f"filter on {name}", f"{name} is text; got {node!r} (quote text values)")

    def props_value(self, node: Any, typed: str, name: str) -> Any:
        """A literal compared with a property-set value of type ``typed``."""
        if typed == "number":
            if isinstance(node, bool) or not isinstance(node, int | float):
                raise InvalidInput(f"filter on {name}", f"{name} is a number; got {node!r}")
            return node
        if typed == "date":
            if isinstance(node, datetime):
                return node.date().isoformat()
            if isinstance(node, date):
                return node.isoformat()
            if isinstance(node, str):
                return _date(node, name).isoformat()
            raise InvalidInput(f"filter on {name}", f"{name} is a date; got {node!r}")
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, str):
            return _text(node, name)
        if isinstance(node, int | float):
            return str(node)  # a number compared with text values: as the text a JSON number reads back as
        raise InvalidInput(f"filter on {name}", f"{name} is text; got {node!r} (quote text values)")


_MIRRORED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def _date(text: str, name: str) -> date:
    """A date literal: ``YYYY-MM-DD``, or an RFC 3339 date-time (its date); GDAL 3.6 writes a date as
    ``'2000-01-01T'``, a trailing ``T`` with no time."""
    try:
        if "T" in text:
            day, _, time = text.partition("T")
            return date.fromisoformat(day) if not time else datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"filter on {name}", f"{name} is a date; {text[:40]!r} is not YYYY-MM-DD") from None


def _text(value: str, name: str) -> str:
    """A text literal, refused when it holds a NUL character (no stored text does; PostgreSQL cannot take one)."""
    if "\x00" in value:
        raise InvalidInput(f"filter on {name}", "a text value contains a NUL character")
    return value


def _name(node: Any) -> str:
    if isinstance(node, ast.Attribute):
        return str(node.name)
    raise InvalidInput("filter", f"expected a property name, got {node!r}")


def _geometry(node: Any) -> BaseGeometry:
    try:
        if isinstance(node, values.Geometry):
            geom = shapely.geometry.shape(node.geometry)
        elif isinstance(node, values.Envelope):
            geom = shapely.box(node.x1, node.y1, node.x2, node.y2)
        elif isinstance(node, ast.Function) and node.name.lower() == "bbox" and len(node.arguments) in (4, 6):
            coords = [float(a) for a in node.arguments]
            half = len(coords) // 2
            geom = shapely.box(coords[0], coords[1], coords[half], coords[half + 1])
        else:
            raise InvalidInput("filter spatial value", f"must be a geometry or BBOX(...), got {node!r}")
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput("filter geometry", f"is not valid GeoJSON/WKT: {_first_line(exc)}") from None
    return checked_geometry(geom, what="filter geometry")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
