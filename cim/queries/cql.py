"""CQL2 filters (OGC API – Features Part 3), text or JSON, as parameterised SQL for either store.

pygeofilter parses; this module walks its tree and writes SQL in which every value the client gave is a bound
parameter and every name is one of the collection's queryables (a typed column of the asset kind, ``geometry``, or
``props.<key>`` for a property-set value), spelled in the store's :class:`~cim.store.sql.Dialect`. Anything else is
an :class:`~cim.errors.InvalidInput` naming the problem.

>>> from cim.model import Kind
>>> from cim.store.sql import Dialect
>>> f = parse_filter("network = 'gas' AND depth_m > 1.5", lang="cql2-text", kind=Kind.PIPE, dialect=Dialect())
>>> f.sql, f.params
('((network = ?) AND (depth_m > ?))', ['gas', 1.5])
"""

from __future__ import annotations

import json
import logging
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


def queryables(kind: Kind) -> dict[str, str]:
    """The names a filter on ``kind`` may use, with their JSON-schema type."""
    names = {"geometry": "geometry"}
    for column in (*BASE_COLUMNS, *fields_of(kind)):
        names[column] = "number" if column in NUMERIC else ("date" if column in DATES else "string")
    return names


def parse_filter(text: str, *, lang: str, kind: Kind, dialect: Dialect) -> Where:
    """The CQL2 ``text`` (in ``lang``: ``cql2-text`` or ``cql2-json``) as SQL over the assets of ``kind``."""
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
        return _Translator(kind, dialect).condition(node)
    except RecursionError:
        raise InvalidInput("filter", "is nested too deeply") from None


class _Translator:
    def __init__(self, kind: Kind, dialect: Dialect) -> None:
        self.kind = kind
        self.s = dialect
        self.columns = set(BASE_COLUMNS) | set(fields_of(kind))

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
            if kind_of != "string" or not isinstance(node.pattern, str):
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
            kind_of = "number" if name in NUMERIC else ("date" if name in DATES else "string")
            return Where(name, []), kind_of
        if name.startswith("props.") and len(name) > len("props."):
            key = name.removeprefix("props.")
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            return self.s.props_value(key, numeric=numeric), ("number" if numeric else "string")
        if name in GEOMETRY_NAMES:
            raise InvalidInput(f"filter property {name!r}", "is the geometry; compare it with S_INTERSECTS and kin")
        known = ", ".join(sorted(self.columns))
        raise InvalidInput(
            f"filter property {name!r}",
            f"does not exist on {self.kind} assets; use one of {known}, geometry, or props.<key>",
        )

    def value(self, node: Any, kind_of: str, attribute: Any) -> Any:
        name = _name(attribute)
        if isinstance(node, (ast.Node, values.Geometry | values.Envelope | values.Interval)):
            raise InvalidInput(f"filter on {name}", "compares a property with a literal value only")
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
                try:
                    return date.fromisoformat(node)
                except ValueError:
                    raise InvalidInput(f"filter on {name}", f"{name} is a date; {node!r} is not YYYY-MM-DD") from None
            raise InvalidInput(f"filter on {name}", f"{name} is a date; got {node!r}")
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, str):
            return _text(node, name)
        if isinstance(node, int | float) and name.startswith("props."):
            return node
        raise InvalidInput(f"filter on {name}", f"{name} is text; got {node!r} (quote text values)")


_MIRRORED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


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
