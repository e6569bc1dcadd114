"""Data-quality findings: what was wrong with which features, by the rule that caught it.

None of them stops a layer: a feature with an unusable geometry is rejected, an impossible value is dropped (the
feature is kept), an invalid geometry is repaired with shapely's ``make_valid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from cim.model import Kind

#: The rules, and what each does to the feature.
RULES: dict[str, str] = {
    "unreadable_geometry": "rejected: no geometry, or one GDAL could not read (e.g. an unclosed ring)",
    "empty_geometry": "rejected: the geometry is empty",
    "invalid_geometry_repaired": "repaired with make_valid",
    "duplicate_id": "rejected: the id was already used by an earlier feature of the layer",
    "not_an_area": "rejected: a point or line given for a kind that is an area (building, park, land use, city, "
    "district, street, grid cell)",
    "unknown_kind": "rejected: the mapping's kind attribute names no kind, or one handled otherwise than the "
    "mapping's kind",
    "negative_value": "value dropped: a length or count below zero",
    "unreadable_value": "value dropped: not a number or date in the declared unit",
    "implausible_install_date": "value dropped: install date before 1800 or in the future",
    "implausible_value": "value dropped: beyond any real asset (over 1,000 storeys, a length over 100 km)",
    "unsupported_geometry": "rejected: a geometry type the reader cannot turn into a shape (CityJSON)",
    "bad_vertex_index": "rejected: a boundary names a vertex the file does not have (CityJSON)",
    "malformed_object": "rejected: the object or its geometry is not shaped as CityJSON says (CityJSON)",
    "outside_lonlat": "rejected: a coordinate is not finite or lies outside lon -180..180 / lat -90..90 once in "
    "WGS84 (a wrong CRS?)",
    "skipped_terrain": "left out: terrain is the viewer's ground, not a governed asset (CityJSON, CityGML)",
    "skipped_group": "left out: a CityObjectGroup only names other objects, it is none itself (CityGML)",
    "broken_xlink": "rejected: an xlink:href names a gml:id the file does not have (CityGML)",
    "too_few_points": "polygon dropped: a ring with fewer than 3 distinct points; the object keeps its other "
    "polygons, and is rejected as empty_geometry when none is left (CityGML)",
    "unreadable_coordinates": "rejected: a ring's coordinates are not numbers in its srsDimension (CityGML)",
    "missing_srs": "rejected: no srsName on the geometry, its member or the CityModel, and no --crs (CityGML)",
    "mixed_crs": "rejected: one object's geometries name different CRSs (CityGML)",
    "other_height_datum": "rejected: heights in another vertical datum than the file's first object's; never mixed "
    "(CityGML)",
    "xml_broken": "rejected: the XML ends early or breaks at this object; the objects before it are kept (CityGML)",
}
#: The rules that drop the whole feature (a summary's ``rejected`` count).
REJECTING: tuple[str, ...] = tuple(rule for rule, effect in RULES.items() if effect.startswith("rejected"))
EXAMPLES = 5
#: Kinds whose assets are areas: footprints extruded to blocks, parks and land parcels measured by area and distance.
AREA_KINDS = frozenset({Kind.BUILDING, Kind.PARK, Kind.LAND_USE, Kind.CITY, Kind.DISTRICT, Kind.STREET, Kind.GRID_CELL})
_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon


@dataclass
class Findings:
    """Counts per rule, with a few example feature ids each."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, rule: str, ids: np.ndarray, detail: str = "") -> None:
        if not len(ids):
            return
        key = f"{rule}:{detail}" if detail else rule
        self.counts[key] = self.counts.get(key, 0) + len(ids)
        shown = self.examples.setdefault(key, [])
        shown.extend(str(i) for i in ids[: EXAMPLES - len(shown)])

    def count(self, *rules: str) -> int:
        return sum(n for key, n in self.counts.items() if key.split(":", 1)[0] in rules)

    def describe(self, most: int = 3) -> str:
        """The most frequent rules in one line: ``outside_lonlat ×2 (e.g. poles:0, poles:1)``."""
        ranked = sorted(self.counts.items(), key=lambda item: -item[1])[:most]
        return "; ".join(f"{key} ×{n:,} (e.g. {', '.join(self.examples.get(key, []))})" for key, n in ranked)

    def as_list(self) -> list[dict[str, object]]:
        return [
            {"rule": key, "count": n, "examples": self.examples.get(key, [])} for key, n in sorted(self.counts.items())
        ]


def clean_geometries(geoms: np.ndarray, ids: np.ndarray, findings: Findings) -> tuple[np.ndarray, np.ndarray]:
    """Repair what can be repaired; return the geometries and a mask of the features to keep."""
    missing = shapely.is_missing(geoms)
    findings.add("unreadable_geometry", ids[missing])
    empty = ~missing & shapely.is_empty(geoms)
    findings.add("empty_geometry", ids[empty])
    keep = ~missing & ~empty
    outside = keep & outside_lonlat(geoms)
    findings.add("outside_lonlat", ids[outside])
    keep &= ~outside
    invalid = keep & ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        findings.add("invalid_geometry_repaired", ids[invalid])
        still_empty = invalid & shapely.is_empty(geoms)
        findings.add("empty_geometry", ids[still_empty], "after repair")
        keep &= ~still_empty
    return geoms, keep


def outside_lonlat(geoms: np.ndarray) -> np.ndarray:
    """A mask of the geometries with a coordinate that is not finite or not inside lon -180..180 / lat -90..90 (a
    layer in another CRS than it says, a reprojection out of its CRS's area, a stray 1e300)."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    bad = ~np.isfinite(coords).all(axis=1) | (np.abs(coords[:, 0]) > 180) | (np.abs(coords[:, 1]) > 90)
    return np.bincount(index[bad], minlength=len(geoms)) > 0


def areas_only(geoms: np.ndarray, keep: np.ndarray, kind: Kind, ids: np.ndarray, findings: Findings) -> np.ndarray:
    """``keep`` without the features of an area kind whose geometry is no polygon (a building given as a point)."""
    if kind not in AREA_KINDS:
        return keep
    wrong = keep & ~np.isin(shapely.get_type_id(geoms), _POLYGONAL)
    findings.add("not_an_area", ids[wrong], str(kind))
    return keep & ~wrong
