"""Data-quality findings: what was wrong with which features, by the rule that caught it.

None of them stops a layer: a feature with an unusable geometry is rejected, an impossible value is dropped (the
feature is kept), an invalid geometry is repaired with shapely's ``make_valid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

#: The rules, and what each does to the feature.
RULES: dict[str, str] = {
    "unreadable_geometry": "rejected: no geometry, or one GDAL could not read (e.g. an unclosed ring)",
    "empty_geometry": "rejected: the geometry is empty",
    "invalid_geometry_repaired": "repaired with make_valid",
    "duplicate_id": "rejected: the id was already used by an earlier feature of the layer",
    "negative_value": "value dropped: a length or count below zero",
    "unreadable_value": "value dropped: not a number or date in the declared unit",
    "implausible_install_date": "value dropped: install date before 1800 or in the future",
    "unsupported_geometry": "rejected: a geometry type the reader cannot turn into a shape (CityJSON)",
    "skipped_terrain": "left out: terrain is the viewer's ground, not a governed asset (CityJSON)",
}
#: The rules that drop the whole feature (a summary's ``rejected`` count).
REJECTING: tuple[str, ...] = tuple(rule for rule, effect in RULES.items() if effect.startswith("rejected"))
EXAMPLES = 5


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
    invalid = keep & ~shapely.is_valid(geoms)
    if invalid.any():
        geoms = geoms.copy()
        geoms[invalid] = shapely.make_valid(geoms[invalid], method="structure", keep_collapsed=False)
        findings.add("invalid_geometry_repaired", ids[invalid])
        still_empty = invalid & shapely.is_empty(geoms)
        findings.add("empty_geometry", ids[still_empty], "after repair")
        keep &= ~still_empty
    return geoms, keep
