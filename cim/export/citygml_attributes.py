"""What a building says besides its geometry, in CityGML 3.0's encoding: ids, generic attributes, the address, the
height, the codes.

Rules from the CityGML 3.0 GML encoding (core.xsd, construction.xsd, building.xsd, generics.xsd of
opengeospatial/CityGML-3.0Encodings):

- ``gml:id`` is an XML ``NCName``: no ``:``, ``$`` or space, not starting with a digit. An asset id that is not one
  (an IFC GlobalId such as ``2O2Fr$t4X7Zf8NOew3FLOH``, a ``layer:fid``) is escaped (:func:`gml_id`) and kept as it
  is in ``gml:identifier`` (codeSpace :data:`ID_CODESPACE`), so a reader gets the exact id back.
- Generic attributes are ``core:genericAttribute`` properties (the core namespace, not ``gen:``) holding
  ``gen:StringAttribute`` / ``IntAttribute`` / ``DoubleAttribute`` / ``DateAttribute`` with ``gen:name`` then
  ``gen:value``; a nested object is a ``gen:GenericAttributeSet`` of its members (``gen:genericAttribute`` there,
  in the generics namespace; one at least).
- ``con:height`` holds a ``con:Height``: ``highReference``, ``lowReference``, ``status`` (``measured`` or
  ``estimated``), ``value`` with its ``uom``.
- ``core:Address`` holds ``core:xalAddress`` with one xAL 3.0 ``xAL:Address``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from cim.gis.citygml import ASSET_ID_CODESPACE

CORE = "http://www.opengis.net/citygml/3.0"
CON = "http://www.opengis.net/citygml/construction/3.0"
BLDG = "http://www.opengis.net/citygml/building/3.0"
GEN = "http://www.opengis.net/citygml/generics/3.0"
GML = "http://www.opengis.net/gml/3.2"
XAL = "urn:oasis:names:tc:ciq:xal:3"
XLINK = "http://www.w3.org/1999/xlink"
NSMAP = {None: CORE, "con": CON, "bldg": BLDG, "gen": GEN, "gml": GML, "xAL": XAL, "xlink": XLINK}
#: The ``codeSpace`` of the ``gml:identifier`` holding an asset's own id (the CityGML reader keeps it as the id).
ID_CODESPACE = ASSET_ID_CODESPACE

_NCNAME_ASCII = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
_KEPT = re.compile(r"[A-Za-z0-9.-]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Characters XML 1.0 cannot hold (control characters), which lxml refuses: left out of any text written.
_XML_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

#: Property keys that say an asset is a building part (CityJSON's and CityGML's type, kept by the importers).
TYPE_KEYS = ("cityjson.type", "citygml.class", "citygml.type", "type")
#: Property keys written as the building's own codes, in the order CityGML 3.0 wants them.
CODE_KEYS = ("class", "function", "usage", "roofType")
_ADDRESS_FIELDS = {
    "country": ("country", "countryname", "addr:country"),
    "area": ("administrativearea", "region", "province", "state", "addr:state", "addr:province"),
    "locality": ("locality", "city", "town", "addr:city"),
    "street": ("thoroughfare", "street", "streetname", "addr:street"),
    "number": ("number", "housenumber", "addr:housenumber"),
    "postcode": ("postcode", "postalcode", "zip", "addr:postcode"),
    "text": ("text", "freetext", "line", "full", "addr:full"),
}


def gml_id(asset_id: str) -> str:
    """``asset_id`` as an XML NCName: kept as it is when it is one (ASCII letters, digits, ``.``, ``-``, ``_``,
    starting with a letter, not starting ``cim_``), else ``cim_`` and the id with every other character as
    ``_<hex>_`` — one id each, as the escape is reversible.

    >>> gml_id("DEBY_LOD2_5744682"), gml_id("2O2Fr$t4X7Zf8NOew3FLOH"), gml_id("roads:17")
    ('DEBY_LOD2_5744682', 'cim_2O2Fr_24_t4X7Zf8NOew3FLOH', 'cim_roads_3a_17')
    """
    if _NCNAME_ASCII.fullmatch(asset_id) and not asset_id.startswith("cim_"):
        return asset_id
    return "cim_" + escaped(asset_id)


def escaped(asset_id: str) -> str:
    """``asset_id`` with every character but ASCII letters, digits, ``.`` and ``-`` as ``_<hex>_``: reversible, and
    never holding ``_p`` (``p`` is no hex digit), so ``cim_<escaped>_p<n>`` names a building's polygons apart from
    every ``gml_id``.

    >>> escaped("a_p1")
    'a_5f_p1'
    """
    return "".join(c if _KEPT.fullmatch(c) else f"_{ord(c):x}_" for c in asset_id)


def address_of(props: Mapping[str, Any]) -> list[dict[str, str]]:
    """The addresses ``props`` holds: ``address`` as an object, a list of objects or a line of text, or flat keys
    ``address.<field>`` / OpenStreetMap's ``addr:<field>``; each as fields of :data:`_ADDRESS_FIELDS`."""
    found: list[dict[str, str]] = []
    value = props.get("address")
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str) and item.strip():
            found.append({"text": item.strip()})
        elif isinstance(item, Mapping):
            fields = _address_fields({str(k).lower(): v for k, v in item.items()})
            if fields:
                found.append(fields)
    flat = {k.lower().removeprefix("address."): v for k, v in props.items() if k.lower().startswith("address.")}
    flat.update({k.lower(): v for k, v in props.items() if k.lower().startswith("addr:")})
    if fields := _address_fields(flat):  # flat keys complete the one address given whole, or are one
        if len(found) == 1:
            found[0] = {**fields, **found[0]}
        else:
            found.append(fields)
    return found


def address_keys(props: Mapping[str, Any]) -> set[str]:
    """The keys of ``props`` :func:`address_of` reads (left out of the generic attributes)."""
    return {k for k in props if k == "address" or k.lower().startswith(("address.", "addr:"))}


def _address_fields(values: Mapping[str, Any]) -> dict[str, str]:
    fields = {}
    for field, names in _ADDRESS_FIELDS.items():
        for name in names:
            value = values.get(name)
            if value is not None and str(value).strip():
                fields[field] = str(value).strip()
                break
    return fields


def write_address(xf: Any, address: Mapping[str, str]) -> None:
    """One ``bldg:address`` with its xAL 3.0 address (free text first, then country, area, locality, street and
    number, postcode: xAL's order)."""
    with nested(xf, f"{{{BLDG}}}address", f"{{{CORE}}}Address", f"{{{CORE}}}xalAddress", f"{{{XAL}}}Address"):
        if "text" in address:
            with xf.element(f"{{{XAL}}}FreeTextAddress"):
                leaf(xf, f"{{{XAL}}}AddressLine", address["text"])
        for field, tag in (("country", "Country"), ("area", "AdministrativeArea"), ("locality", "Locality")):
            if field in address:
                with xf.element(f"{{{XAL}}}{tag}"):
                    leaf(xf, f"{{{XAL}}}NameElement", address[field])
        if "street" in address or "number" in address:
            with xf.element(f"{{{XAL}}}Thoroughfare"):
                if "street" in address:
                    leaf(xf, f"{{{XAL}}}NameElement", address["street"])
                if "number" in address:
                    leaf(xf, f"{{{XAL}}}Number", address["number"])
        if "postcode" in address:
            with xf.element(f"{{{XAL}}}PostCode"):
                leaf(xf, f"{{{XAL}}}Identifier", address["postcode"])


def write_generic_attributes(xf: Any, values: Mapping[str, Any]) -> None:
    """Each value as a ``core:genericAttribute`` (nulls and non-finite numbers left out)."""
    for name, value in values.items():
        for tag, text in _generic(value):
            with xf.element(f"{{{CORE}}}genericAttribute"):
                _write_generic(xf, name, tag, text)


def _generic(value: Any) -> Iterator[tuple[str, Any]]:
    """The ``gen:`` element and text (or members, for a set) of one value; nothing for a null."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return
    if isinstance(value, bool):
        yield "StringAttribute", "true" if value else "false"
    elif isinstance(value, int):
        yield "IntAttribute", str(value)
    elif isinstance(value, float):
        yield "DoubleAttribute", repr(value)
    elif isinstance(value, Mapping):
        if any(True for v in value.values() for _ in _generic(v)):  # a set holds one attribute or more
            yield "GenericAttributeSet", value
    elif isinstance(value, str) and _DATE.fullmatch(value):
        yield "DateAttribute", value
    elif isinstance(value, str):
        yield "StringAttribute", value
    else:  # a list: its JSON text
        yield "StringAttribute", json.dumps(value, ensure_ascii=False)


def _write_generic(xf: Any, name: str, tag: str, content: Any) -> None:
    with xf.element(f"{{{GEN}}}{tag}"):
        leaf(xf, f"{{{GEN}}}name", name)
        if tag != "GenericAttributeSet":
            leaf(xf, f"{{{GEN}}}value", content)
            return
        for member, value in content.items():
            for member_tag, text in _generic(value):
                with xf.element(f"{{{GEN}}}genericAttribute"):
                    _write_generic(xf, str(member), member_tag, text)


def write_height(xf: Any, value: float, *, measured: bool) -> None:
    """``con:height``: from the lowest ground point to the highest roof edge, in metres."""
    with xf.element(f"{{{CON}}}height"), xf.element(f"{{{CON}}}Height"):
        leaf(xf, f"{{{CON}}}highReference", "highestRoofEdge")
        leaf(xf, f"{{{CON}}}lowReference", "lowestGroundPoint")
        leaf(xf, f"{{{CON}}}status", "measured" if measured else "estimated")
        leaf(xf, f"{{{CON}}}value", f"{value:.3f}", {"uom": "m"})


def codes(props: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """The building's ``class``/``function``/``usage``/``roofType`` codes in ``props``, each with its codeSpace:
    under their own names (a list gives several) or as the CityGML importer keeps them, ``citygml.<name>`` (several
    joined by ``;``) with ``citygml.<name>.codeSpace``. ``citygml.class`` is not read: the importer keeps the
    object's class name there."""
    found: list[tuple[str, str, str | None]] = []
    for key in CODE_KEYS:
        value, space = props.get(key), props.get(f"{key}.codeSpace")
        if value is None and key != "class":
            value, space = props.get(f"citygml.{key}"), props.get(f"citygml.{key}.codeSpace")
            value = value.split(";") if isinstance(value, str) else value
        for item in value if isinstance(value, list) else [value]:
            if item is not None and str(item).strip():
                found.append((key, str(item).strip(), str(space) if space else None))
                if key in ("class", "roofType"):  # at most one of each
                    break
    return found


def code_keys(props: Mapping[str, Any]) -> set[str]:
    """The keys of ``props`` :func:`codes` reads (left out of the generic attributes)."""
    names = {*CODE_KEYS, *(f"citygml.{k}" for k in CODE_KEYS[1:])}
    return {k for k in props if k in names or k.removesuffix(".codeSpace") in names}


@contextmanager
def nested(xf: Any, *tags: str) -> Iterator[None]:
    """Elements each inside the one before, written through the incremental writer ``xf``."""
    with ExitStack() as stack:
        for tag in tags:
            stack.enter_context(xf.element(tag))
        yield


def leaf(xf: Any, tag: str, text: str, attributes: Mapping[str, str] | None = None) -> None:
    """An element holding only ``text``."""
    with xf.element(tag, attributes or {}):
        xf.write(_XML_UNSAFE.sub("", text))
