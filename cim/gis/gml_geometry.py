"""GML geometry as CityGML uses it: the polygons (rings of raw coordinates) under a geometry property.

Polygon, Triangle, PolygonPatch and Rectangle inside MultiSurface, CompositeSurface, Solid, MultiSolid,
CompositeSolid, TriangulatedSurface / TIN …; rings as ``posList``, ``pos`` or GML 3.1's ``coordinates``;
``OrientableSurface`` flips; ``xlink:href="#id"`` references followed within the member, then to recent members'
polygons. The common case (plain 3D posLists) is read in bulk with numpy; everything else one element at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from lxml import etree  # type: ignore[import-untyped]

from cim.gis.gml import GML_NAMESPACES, XLINK_HREF, gml_id, local_name

_POLYGON_NAMES = frozenset({"Polygon", "Triangle", "PolygonPatch", "Rectangle"})


class GeometryProblem(Exception):
    """Why a geometry cannot be read: ``rule`` (a finding's rule) and ``detail``."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Surface:
    """One polygon: its rings (outer first) as raw (n, 3) coordinates without the closing point, and the srsName
    and dimension that apply to it (None: the default of the member or file)."""

    rings: list[npt.NDArray[np.float64]]
    srs: str | None


@dataclass(slots=True)
class Polygons:
    """Polygons of several geometry properties: their rings one after another in ``xyz`` (raw coordinates, no
    closing point), ``ring_sizes`` points each, ``rings_per_polygon`` rings each (outer first), ``prop_of`` the
    property (its number in the list given) each polygon came from, and the srsNames they name (None: the
    default of the member or file)."""

    xyz: npt.NDArray[np.float64]
    ring_sizes: npt.NDArray[np.int64]
    rings_per_polygon: npt.NDArray[np.int64]
    prop_of: npt.NDArray[np.int64]
    srs_names: set[str | None]


def surfaces(
    props: list[etree._Element], ids: IdIndex, srs: str | None, dimension: int | None, dropped: list[str]
) -> Polygons | None:
    """The polygons under the geometry properties ``props`` (None: there are none), xlinks followed (member first,
    then recent members). A ring with fewer than 3 distinct points is left out (a polygon whose outer ring it is
    too) and its polygon's id put in ``dropped``. Raises :class:`GeometryProblem` for a broken xlink or unreadable
    numbers.

    The common case is read in bulk (all the rings' numbers in one numpy call, checks vectorised): one-ring
    polygons with 3D posLists, no xlink, no orientation flip, an srsName at most on the geometry itself. The
    properties that are not so, and all of them when a ring fails a check, are read one element at a time by
    :func:`_walk`, which handles everything and says what is wrong."""
    texts: list[str] = []
    plain_props: list[int] = []
    counts: list[int] = []
    names: set[str | None] = set()
    slow: list[int] = []
    for n, prop in enumerate(props):
        found = _plain_texts(prop, srs, dimension)
        if found is None:
            slow.append(n)
        elif found[0]:
            plain_props.append(n)
            counts.append(len(found[0]))
            names.add(found[1])
            texts.extend(found[0])
    bulk = _plain_rings(texts) if texts else None
    if texts and bulk is None:  # a ring to drop or numbers to report somewhere: each property the slow way
        slow, bulk, names = sorted(slow + plain_props), None, set()
    chunks: list[Polygons] = []
    if bulk is not None:
        chunks.append(
            Polygons(
                xyz=bulk[0],
                ring_sizes=bulk[1],
                rings_per_polygon=np.ones(len(bulk[1]), dtype=np.int64),
                prop_of=np.repeat(np.array(plain_props, dtype=np.int64), counts),
                srs_names=names,
            )
        )
    for n in slow:
        found_surfaces = list(_walk(props[n], ids, srs, dimension, False, 0, dropped))
        if found_surfaces:
            chunks.append(
                Polygons(
                    xyz=np.concatenate([ring for s in found_surfaces for ring in s.rings]),
                    ring_sizes=np.array([len(r) for s in found_surfaces for r in s.rings], dtype=np.int64),
                    rings_per_polygon=np.array([len(s.rings) for s in found_surfaces], dtype=np.int64),
                    prop_of=np.full(len(found_surfaces), n, dtype=np.int64),
                    srs_names={s.srs for s in found_surfaces},
                )
            )
    if len(chunks) <= 1:
        return chunks[0] if chunks else None
    return Polygons(
        xyz=np.concatenate([c.xyz for c in chunks]),
        ring_sizes=np.concatenate([c.ring_sizes for c in chunks]),
        rings_per_polygon=np.concatenate([c.rings_per_polygon for c in chunks]),
        prop_of=np.concatenate([c.prop_of for c in chunks]),
        srs_names=set().union(*(c.srs_names for c in chunks)),
    )


_POSLIST_TAGS = frozenset(f"{{{ns}}}posList" for ns in GML_NAMESPACES)
#: Elements the bulk path leaves to :func:`_walk`: orientation flips, coordinates not in posLists, holes.
_SPECIAL_TAGS = frozenset(
    f"{{{ns}}}{name}"
    for ns in GML_NAMESPACES
    for name in ("OrientableSurface", "coordinates", "pos", "pointProperty", "interior", "inner", "Ring")
)


def _plain_texts(prop: etree._Element, srs: str | None, dimension: int | None) -> tuple[list[str], str | None] | None:
    """The posList texts of a property the bulk path can read, and its srsName; None when it cannot (an xlink, an
    srsName below its geometry, 2D coordinates, holes, orientation flips …). One pass over its elements: they are
    few, and plain attribute reads cost less than an XPath call per property."""
    if dimension not in (None, 3) or len(prop) != 1:
        return None
    geometry = prop[0]
    own = srs
    texts: list[str] = []
    for element in prop.iter():
        tag = element.tag
        if tag in _POSLIST_TAGS:
            texts.append(element.text or "")
        elif tag in _SPECIAL_TAGS:
            return None
        if element.get(XLINK_HREF) is not None:
            return None
        given = element.get("srsDimension")
        if given is not None and given != "3":
            return None
        name = element.get("srsName")
        if name is not None:
            if element is not geometry:
                return None
            own = name
    return texts, own


def _plain_rings(texts: list[str]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]] | None:
    """posList texts as rings (points one after another, without the closing one) and their sizes, or None when
    one is not a closed ring of 3 distinct points in 3D numbers. All in one numpy call: the rings are joined with
    a NaN between them, which no coordinate is."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            numbers = np.fromstring(" nan ".join(texts) + " nan", sep=" ")
        except (DeprecationWarning, ValueError):
            return None
    breaks = np.flatnonzero(np.isnan(numbers))
    if len(breaks) != len(texts):
        return None  # a "nan" of its own in a posList
    sizes = np.diff(np.concatenate([[-1], breaks])) - 1
    if (sizes % 3).any() or (sizes < 12).any():  # a closed ring of 3 points has 4
        return None
    xyz = numbers[~np.isnan(numbers)].reshape(-1, 3)
    counts = sizes // 3
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ends = starts + counts - 1
    if not (xyz[starts] == xyz[ends]).all():
        return None
    keep = np.ones(len(xyz), dtype=bool)
    keep[ends] = False
    xyz, counts = xyz[keep], counts - 1
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    unlike_first = (xyz != np.repeat(xyz[starts], counts, axis=0)).any(axis=1)
    second = np.minimum.reduceat(np.where(unlike_first, np.arange(len(xyz)), len(xyz)), starts)
    if (second >= len(xyz)).any():
        return None
    unlike_both = unlike_first & (xyz != np.repeat(xyz[second], counts, axis=0)).any(axis=1)
    if not np.maximum.reduceat(unlike_both, starts).all():
        return None
    return xyz, counts.astype(np.int64)


def _walk(
    element: etree._Element,
    ids: IdIndex,
    srs: str | None,
    dimension: int | None,
    reverse: bool,
    depth: int,
    dropped: list[str],
) -> Iterator[Surface]:
    if depth > 40:
        raise GeometryProblem("malformed_object", "geometry nests deeper than 40 levels (an xlink cycle?)")
    srs = element.get("srsName") or srs
    given = element.get("srsDimension")
    dimension = int(given) if given and given.isdigit() else dimension
    href = element.get(XLINK_HREF)
    if href is not None and not len(element):
        target = ids.find(href)
        if target is None:
            raise GeometryProblem("broken_xlink", href)
        yield from _walk(target, ids, srs, dimension, reverse, depth + 1, dropped)
        return
    name = local_name(element)
    if name in _POLYGON_NAMES:
        read = [_ring(r, dimension, element) for r in element.iter("{*}LinearRing", "{*}Ring")]
        if not read:
            return
        if any(r is None for r in read):
            dropped.append(gml_id(element) or "a polygon without gml:id")
        rings = [r for r in read if r is not None]
        if read[0] is not None:
            yield Surface(rings=[r[::-1] for r in rings] if reverse else rings, srs=srs)
        return
    if name == "OrientableSurface" and element.get("orientation") == "-":
        reverse = not reverse
    for child in element:
        if isinstance(child.tag, str):
            yield from _walk(child, ids, srs, dimension, reverse, depth + 1, dropped)


def _ring(ring: etree._Element, dimension: int | None, polygon: etree._Element) -> npt.NDArray[np.float64] | None:
    """The ring's points without the closing one, or None when fewer than 3 of them are distinct."""
    texts: list[str] = []
    for child in ring:
        name = local_name(child)
        given = child.get("srsDimension")
        if given and given.isdigit():
            dimension = int(given)
        if name in ("posList", "pos"):
            texts.append(child.text or "")
        elif name == "coordinates":  # GML 3.1 / CityGML 1.0: "x,y,z x,y,z"
            texts.append((child.text or "").replace(child.get("cs", ","), " "))
        elif name == "pointProperty" or name == "Point":
            texts.extend(p.text or "" for p in child.iter("{*}pos"))
    where = gml_id(polygon) or "a polygon without gml:id"
    try:
        numbers = np.array(" ".join(texts).split(), dtype=np.float64)
    except ValueError:
        raise GeometryProblem("unreadable_coordinates", where) from None
    dim = dimension or 3
    if dim not in (2, 3) or numbers.size % dim:
        raise GeometryProblem("unreadable_coordinates", where)
    xyz = numbers.reshape(-1, dim)
    if dim == 2:
        xyz = np.column_stack([xyz, np.zeros(len(xyz))])
    if len(xyz) > 1 and np.array_equal(xyz[0], xyz[-1]):
        xyz = xyz[:-1]
    if len(xyz) < 3:
        return None
    other = (xyz != xyz[0]).any(axis=1)  # 3 distinct points: one unlike the first, and one unlike both
    if not other.any():
        return None
    third = other & (xyz != xyz[int(np.argmax(other))]).any(axis=1)
    return xyz if third.any() else None


_WITH_ID = etree.XPath(
    "descendant-or-self::*[@g31:id or @g32:id]", namespaces={"g31": GML_NAMESPACES[0], "g32": GML_NAMESPACES[1]}
)


class IdIndex:
    """gml:id → element within the member being read, built on the first xlink, then a bounded memory of the
    polygons of recent members (a reference to a polygon of an earlier member still resolves). Those are kept as
    their XML text, parsed again only when referred to: copying each as an element cost 1 s of a 16 s import of
    10,000 small 3.0 objects, and keeping 50,000 of them ~150 MB."""

    def __init__(self, recent_limit: int = 20_000) -> None:
        self._member: dict[str, etree._Element] | None = None
        self._element: etree._Element | None = None
        self._recent: dict[str, bytes] = {}
        self._limit = recent_limit

    def start(self, member: etree._Element) -> None:
        if self._member is not None:  # keep the last member's polygons for later references (it is freed)
            for key, element in self._member.items():
                if local_name(element) in _POLYGON_NAMES:
                    self._recent[key] = etree.tostring(element)
            while len(self._recent) > self._limit:
                del self._recent[next(iter(self._recent))]
        self._member, self._element = None, member

    def find(self, href: str) -> etree._Element | None:
        key = href.strip().removeprefix("#")
        if self._member is None:
            self._member = {}
            if self._element is not None:  # only the elements with an id, found by libxml2 (not a Python loop)
                for element in _WITH_ID(self._element):
                    found = gml_id(element)
                    if found:
                        self._member[found] = element
        found = self._member.get(key)
        if found is not None:
            return found
        text = self._recent.get(key)
        return etree.fromstring(text) if text is not None else None
