"""A CityGML city object's attributes: the typed columns it feeds, and everything else as ``props``.

- CityGML's own: ``gml:name``, function / usage / class codes (with their codeSpace), ``measuredHeight`` (1.0/2.0) or
  ``con:height`` (3.0), ``storeysAboveGround``, ``yearOfConstruction`` (1.0/2.0) or ``dateOfConstruction`` (3.0),
  and any other plain value (``roofType``, ``creationDate`` …) as ``citygml.<name>``.
- Generic attributes, 1.0/2.0 (``gen:stringAttribute name=…`` / ``gen:value``, int, double, measure, date, uri,
  ``genericAttributeSet``) and 3.0 (``genericAttribute`` / ``gen:StringAttribute`` with ``gen:name`` and
  ``gen:value``, ``GenericAttributeSet``): by their own name (a set's as ``<set>.<name>``), numbers as numbers.
- Addresses, xAL 2.0 (``AddressDetails``) and xAL 3.0 (``Address``): one readable ``address`` and its parts as
  ``address.street``, ``address.number``, ``address.postcode``, ``address.locality``, ``address.country``.
- PLATEAU's i-UR ADE (``uro``): every value as ``uro.<property>.<path>`` (``uro.buildingDetails.city``); a
  utility pipe's ``uro:year``, ``uro:innerDiamiter`` (sic) and ``uro:minDepth`` / ``maxDepth`` feed
  ``install_date``, ``diameter_mm``, ``depth_m``.

A value that is not what its element says (``measuredHeight`` "2.8（テスト）") is left out of the typed column, kept
in ``props`` as written, and reported as a finding naming the object and the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from cim.gis.gml import local_name

_GEN_2 = {
    "stringAttribute": str,
    "uriAttribute": str,
    "dateAttribute": str,
    "intAttribute": int,
    "doubleAttribute": float,
    "measureAttribute": float,
}
_GEN_3 = {
    "StringAttribute": str,
    "UriAttribute": str,
    "DateAttribute": str,
    "CodeAttribute": str,
    "IntAttribute": int,
    "DoubleAttribute": float,
    "MeasureAttribute": float,
}
#: Children that are geometry, structure or other objects, not attributes.
_NOT_ATTRIBUTES = frozenset(
    {
        "boundedBy", "boundary", "consistsOfBuildingPart", "buildingPart", "outerBuildingInstallation",
        "interiorBuildingInstallation", "buildingInstallation", "interiorRoom", "buildingRoom", "opening",
        "appearance", "externalReference", "generalizesTo", "relativeToTerrain", "relativeToWater", "section",
        "intersection", "trafficSpace", "auxiliaryTrafficSpace", "trafficArea", "auxiliaryTrafficArea",
        "consistsOfBridgePart", "bridgePart", "consistsOfTunnelPart", "tunnelPart", "lod0Point", "multiPoint",
    }
)  # fmt: skip
_XAL_PARTS = {
    "ThoroughfareName": "street",
    "ThoroughfareNumber": "number",
    "PostalCodeNumber": "postcode",
    "LocalityName": "locality",
    "DependentLocalityName": "district",
    "CountryName": "country",
    "AdministrativeAreaName": "region",
}
#: PLATEAU utility classes → network.
PIPE_NETWORKS = {
    "SewerPipe": "sewer",
    "WaterPipe": "water",
    "OilGasChemicalsPipe": "gas",
    "ThermalPipe": "heat",
    "TelecommunicationsCable": "telecom",
    "ElectricityCable": "power",
    "Pipe": None,
    "Cable": None,
}
_LENGTH_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


@dataclass
class Attributes:
    """What one object's attributes give: the typed values, the props, and problems as (rule, field)."""

    name: str | None = None
    measured_height: float | None = None
    storeys: int | None = None
    install_date: date | None = None
    diameter_mm: float | None = None
    depth_m: float | None = None
    props: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)


def read_attributes(element: etree._Element) -> Attributes:
    """The attributes of the city object ``element`` (its direct children; nested objects are not read)."""
    found = Attributes()
    props = found.props
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = local_name(child)
        namespace = child.tag[1 : child.tag.find("}")] if child.tag.startswith("{") else ""
        if name.startswith("lod") or name in _NOT_ATTRIBUTES:
            continue
        if "/uro/" in namespace:
            if len(child):
                _uro(child, f"uro.{name}", props)
            elif child.text and child.text.strip():  # a value right on the object (a pipe's diameter)
                props[f"uro.{name}"] = child.text.strip()
                if child.get("uom"):
                    props[f"uro.{name}.uom"] = child.get("uom")
        elif namespace.startswith("http://www.opengis.net/gml"):
            if name == "name" and child.text and found.name is None:
                found.name = child.text.strip()
            elif name == "description" and child.text:
                props["description"] = child.text.strip()
        elif "/generics/" in namespace or name == "genericAttribute":
            _generic(child, "", props)
        elif name == "address":
            props.update(read_address(child))
        elif name == "measuredHeight":
            found.measured_height = _measure(child.text, "measuredHeight", props, found)
        elif name == "height":  # 3.0 con:height / con:Height
            _height_3(child, found)
        elif name == "storeysAboveGround":
            value = _measure(child.text, name, props, found)
            found.storeys = int(value) if value is not None and value < 1000 else None
        elif name == "yearOfConstruction":
            props["citygml.yearOfConstruction"] = (child.text or "").strip()
            found.install_date = _year(child.text, name, found)
        elif name == "dateOfConstruction":
            props["citygml.dateOfConstruction"] = (child.text or "").strip()
            found.install_date = _date(child.text, name, found)
        elif not len(child) and child.text and child.text.strip():
            key = f"citygml.{name}"
            value = child.text.strip()
            props[key] = f"{props[key]};{value}" if key in props else value
            if child.get("codeSpace"):
                props[f"{key}.codeSpace"] = child.get("codeSpace")
    _pipe_fields(found)
    return found


def _measure(text: str | None, name: str, props: dict[str, Any], found: Attributes) -> float | None:
    raw = (text or "").strip()
    props[f"citygml.{name}"] = raw
    try:
        value = float(raw)
    except ValueError:
        found.problems.append(("unreadable_value", name))
        return None
    if not math.isfinite(value) or value < 0:
        found.problems.append(("negative_value" if value < 0 else "unreadable_value", name))
        return None
    return value


def _height_3(element: etree._Element, found: Attributes) -> None:
    for height in element:
        parts = {local_name(c): (c.text or "").strip() for c in height if isinstance(c.tag, str)}
        if "value" not in parts:
            continue
        key = f"citygml.height.{parts.get('highReference', '')}-{parts.get('lowReference', '')}".rstrip(".-")
        found.props[key] = parts["value"]
        if found.measured_height is None or parts.get("highReference") == "highestRoofEdge":
            try:
                value = float(parts["value"])
            except ValueError:
                found.problems.append(("unreadable_value", "height"))
                continue
            if math.isfinite(value) and value >= 0:
                found.measured_height = value


def _year(text: str | None, name: str, found: Attributes) -> date | None:
    raw = (text or "").strip()
    try:
        year = int(raw[:4]) if len(raw) >= 4 else int(raw)
    except ValueError:
        found.problems.append(("unreadable_value", name))
        return None
    if not 1800 <= year <= date.today().year:
        found.problems.append(("implausible_install_date", name))
        return None
    return date(year, 1, 1)


def _date(text: str | None, name: str, found: Attributes) -> date | None:
    raw = (text or "").strip()
    try:
        day = date.fromisoformat(raw[:10])
    except ValueError:
        return _year(raw, name, found)
    if not 1800 <= day.year <= date.today().year:
        found.problems.append(("implausible_install_date", name))
        return None
    return day


def _generic(element: etree._Element, prefix: str, props: dict[str, Any]) -> None:
    """A generic attribute (either version) or a set of them, into ``props``."""
    name = local_name(element)
    if name == "genericAttribute":  # 3.0 property element around one attribute
        for child in element:
            if isinstance(child.tag, str):
                _generic(child, prefix, props)
        return
    parts = {local_name(c): c for c in element if isinstance(c.tag, str)}
    key_element = parts.get("name")
    key = element.get("name") or (key_element.text.strip() if key_element is not None and key_element.text else "")
    if name in ("genericAttributeSet", "GenericAttributeSet"):
        inner = f"{prefix}{key}." if key else prefix
        for child in element:
            if isinstance(child.tag, str) and local_name(child) not in ("name", "codeSpace"):
                _generic(child, inner, props)
        return
    if name == "value" and local_name(element.getparent()) == "GenericAttributeSet":
        for child in element:  # 3.0 set: gen:value holds genericAttribute elements
            if isinstance(child.tag, str):
                _generic(child, prefix, props)
        return
    kind = _GEN_2.get(name) or _GEN_3.get(name)
    value_element = parts.get("value")
    if kind is None or not key or value_element is None:
        return
    text = (value_element.text or "").strip()
    value: Any = text
    if kind is not str:
        try:
            number = kind(text) if kind is int else float(text)
            value = number if math.isfinite(number) else text
        except ValueError:
            value = text
    props[prefix + key] = value
    if value_element.get("uom"):
        props[f"{prefix}{key}.uom"] = value_element.get("uom")


def read_address(element: etree._Element) -> dict[str, Any]:
    """An ``address`` property (xAL 2.0 or 3.0) as ``address`` (one line) and ``address.<part>``."""
    parts: dict[str, str] = {}
    leaves: list[str] = []
    for node in element.iter():
        if not isinstance(node.tag, str) or len(node) or not (node.text and node.text.strip()):
            continue
        if "ciq" not in node.tag and "xAL" not in node.tag:
            continue  # the address point's gml:pos
        text = node.text.strip()
        leaves.append(text)
        name = local_name(node)
        part = _XAL_PARTS.get(name) or _XAL_PARTS.get(name.replace("Fare", "fare"))
        if part is None:  # xAL 3.0: NameElement / Number / Identifier under Country, Locality, Thoroughfare …
            parent = local_name(node.getparent()).lower()
            if name == "NameElement":
                part = {"country": "country", "locality": "locality", "thoroughfare": "street"}.get(parent)
                if part == "street" and node.get("{urn:oasis:names:tc:ciq:xal:3}NameType") == "ReferenceLocation":
                    part = "place"
            elif name == "Number" and parent == "thoroughfare":
                part = "number"
            elif name == "Identifier" and parent == "postcode":
                part = "postcode"
        if part and part not in parts:
            parts[part] = text
    if not leaves:
        return {}
    street = " ".join(p for p in (parts.get("street"), parts.get("number")) if p)
    town = " ".join(p for p in (parts.get("postcode"), parts.get("locality")) if p)
    line = ", ".join(p for p in (parts.get("place"), street, parts.get("district"), town, parts.get("country")) if p)
    out: dict[str, Any] = {"address": line or ", ".join(leaves)}
    out.update({f"address.{k}": v for k, v in parts.items()})
    return out


def _uro(element: etree._Element, path: str, props: dict[str, Any]) -> None:
    """An i-UR ADE property's values as ``uro.<path>`` (class elements, capitalised, add no step)."""
    for child in element:
        if not isinstance(child.tag, str):
            continue
        name = local_name(child)
        if name.startswith("lod") or child.tag.startswith("{http://www.opengis.net/gml"):
            continue
        step = path if name[:1].isupper() else f"{path}.{name}"
        if len(child):
            _uro(child, step, props)
        elif child.text and child.text.strip():
            value: Any = child.text.strip()
            if step in props:
                old = props[step]
                props[step] = [*old, value] if isinstance(old, list) else [old, value]
            else:
                props[step] = value
            if child.get("uom"):
                props[f"{step}.uom"] = child.get("uom")


def _pipe_fields(found: Attributes) -> None:
    """PLATEAU utility values: ``uro:year`` (installed), inner diameter in its unit, cover depth."""
    props = found.props
    year = _first(props, "year")
    if year is not None and found.install_date is None:
        found.install_date = _year(str(year), "uro:year", found)
    for key in ("innerDiamiter", "innerDiameter"):
        value = _first(props, key)
        if value is not None:
            unit = str(_first(props, f"{key}.uom") or "mm")
            try:
                found.diameter_mm = float(value) * _LENGTH_TO_MM.get(unit, 1.0)
            except ValueError:
                found.problems.append(("unreadable_value", f"uro:{key}"))
            break
    for key in ("depth", "minDepth", "maxDepth"):  # the cover (shallowest) depth first: what digging meets
        value = _first(props, key)
        if value is not None:
            try:
                found.depth_m = float(value)
            except ValueError:
                found.problems.append(("unreadable_value", f"uro:{key}"))
            break


def _first(props: dict[str, Any], leaf: str) -> Any:
    for key, value in props.items():
        if key.startswith("uro.") and key.endswith(f".{leaf}"):
            return value[0] if isinstance(value, list) else value
    return None
