"""EXT_meshopt_compression for the tiles' glbs: a post-pass over a finished glb, and its inverse.

:func:`compress_glb` encodes every vertex-attribute buffer view (ATTRIBUTES mode, when its stride is a multiple of
4) and every index buffer view (TRIANGLES mode for triangle lists, else INDICES) with meshoptimizer (PyPI ``meshopt``,
meshoptimizer 1.3, bitstream version 0 as the extension requires), keeping a view as it is when encoding does not
make it smaller; property-table views (no target) stay as they are. The result follows the extension's text: the
compressed bytes and the untouched views live in the GLB binary chunk (buffer 0), every compressed view points its
``buffer`` at a *fallback* buffer (index 1, no data, ``"fallback": true``, large enough for every view that refers
to it), and ``EXT_meshopt_compression`` is both used and required. CesiumJS decodes it (its meshoptimizer decoder);
glTF-Validator 2.0.0-dev.3.10 does not (it reports the compressed views as unsupported/undecodable), so the tests
validate :func:`decompress_glb`'s plain copy.

Measured on 100,000 LOD1 buildings with metadata (``bench/tiles_bench.py -n 100000``, its compression section),
bytes per building: the writer before issue 24 (float32 positions at this density, every vertex per face) 1,049
plain, 576 meshopt, 310 plain+gzip, 367 meshopt+gzip; the lean writer (:mod:`cim.tiling.mesh_prep`: int16
positions, shared vertices in first-use order) 677 plain, 276 meshopt, 171 plain+gzip, 145 meshopt+gzip — meshopt
pays on disk and on the wire. The post-pass costs ≈ 3 µs per building (≈ 300,000 buildings/s on one core). Draco
(DracoPy 2.2, 16-bit positions, 8-bit normals) makes the geometry alone 89 B (47 gzipped) against meshopt's 207 (94),
but encodes at ≈ 61,000 buildings/s — as slow as the whole tile writer — and decodes far slower in the browser.

The writer orders vertices by first use (what the codecs expect). Putting triangles in vertex-cache order too
(meshopt's ``reorder_mesh``) was measured with int16 positions before that order: 289 → 259 B per building on disk
but 123 → 128 gzipped, for ≈ 6 µs per building of encoding; not done.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import meshopt
import numpy as np

from cim.tiling.glb import read_glb

EXTENSION = "EXT_meshopt_compression"
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_COMPONENT_SIZE = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
#: Byte alignment of every view in the output binary (glTF: a multiple of the component size; EXT_structural_metadata
#: asks 8 for its tables). Compressed data needs none, but one rule for all keeps the layout obvious.
_ALIGN = 8


def compress_glb(glb: bytes) -> bytes:
    """``glb`` with its vertex and index buffer views meshopt-encoded (see the module text); ``glb`` itself when that
    is not smaller."""
    doc, binary = read_glb(glb)
    views = doc.get("bufferViews", [])
    plans = {i: plan for i, view in enumerate(views) if (plan := _plan(doc, i, view)) is not None}
    encoded: dict[int, bytes] = {}
    for i, (mode, stride, count) in plans.items():
        view = views[i]
        if view.get("buffer", 0) != 0:
            continue
        raw = binary[view.get("byteOffset", 0) : view.get("byteOffset", 0) + view["byteLength"]]
        data = _encode(raw, mode, stride, count)
        if len(data) < len(raw):
            encoded[i] = data
    if not encoded:
        return glb
    out, fallback = bytearray(), 0
    new_views = []
    for i, view in enumerate(views):
        start, length = view.get("byteOffset", 0), view["byteLength"]
        out += b"\x00" * (-len(out) % _ALIGN)
        if i not in encoded:
            new_views.append({**view, "byteOffset": len(out)})
            out += binary[start : start + length]
            continue
        mode, stride, count = plans[i]
        fallback += -fallback % _ALIGN
        entry = {**view, "buffer": 1, "byteOffset": fallback}
        entry["extensions"] = {
            **view.get("extensions", {}),
            EXTENSION: {
                "buffer": 0,
                "byteOffset": len(out),
                "byteLength": len(encoded[i]),
                "byteStride": stride,
                "mode": mode,
                "count": count,
            },
        }
        new_views.append(entry)
        out += encoded[i]
        fallback += length
    out += b"\x00" * (-len(out) % 8)  # EXT_structural_metadata: the BIN chunk padded to 8 bytes
    doc["bufferViews"] = new_views
    placeholder = {"byteLength": fallback, "extensions": {EXTENSION: {"fallback": True}}}  # no data: required
    doc["buffers"] = [{**doc["buffers"][0], "byteLength": len(out)}, placeholder]
    for key in ("extensionsUsed", "extensionsRequired"):
        doc[key] = [*doc.get(key, []), *([EXTENSION] if EXTENSION not in doc.get(key, []) else [])]
    packed = _pack(doc, bytes(out))
    return packed if len(packed) < len(glb) else glb  # a small tile: the extension's JSON can cost what it saves


def decompress_glb(glb: bytes) -> bytes:
    """A plain glb holding the same accessor values as ``glb``: every EXT_meshopt_compression view decoded into one
    binary chunk, fallback buffers and the extension gone. A glb without the extension comes back as it is. Raises
    ValueError naming the view when compressed data is out of range, truncated or corrupt."""
    doc, binary = read_glb(glb)
    if EXTENSION not in doc.get("extensionsUsed", []):
        return glb
    buffers = doc.get("buffers", [])
    fallbacks = {i for i, b in enumerate(buffers) if b.get("extensions", {}).get(EXTENSION, {}).get("fallback")}
    out = bytearray()
    new_views = []
    for i, view in enumerate(doc.get("bufferViews", [])):
        ext = view.get("extensions", {}).get(EXTENSION)
        out += b"\x00" * (-len(out) % _ALIGN)
        if ext is None:
            if view.get("buffer", 0) != 0:
                raise ValueError(f"bufferView {i}: refers to buffer {view.get('buffer')}, not the binary chunk")
            data = _slice(binary, view.get("byteOffset", 0), view["byteLength"], f"bufferView {i}")
        else:
            data = _decode(binary, i, view, ext)
        plain = {k: v for k, v in view.items() if k != "extensions"}
        rest = {k: v for k, v in view.get("extensions", {}).items() if k != EXTENSION}
        if rest:
            plain["extensions"] = rest
        new_views.append({**plain, "buffer": 0, "byteOffset": len(out)})
        out += data
    out += b"\x00" * (-len(out) % 8)
    doc["bufferViews"] = new_views
    kept = [b for i, b in enumerate(buffers) if i not in fallbacks]
    doc["buffers"] = [{**kept[0], "byteLength": len(out)}] if kept else [{"byteLength": len(out)}]
    for key in ("extensionsUsed", "extensionsRequired"):
        names = [e for e in doc.get(key, []) if e != EXTENSION]
        if names:
            doc[key] = names
        else:
            doc.pop(key, None)
    return _pack(doc, bytes(out))


def _plan(doc: dict[str, Any], index: int, view: dict[str, Any]) -> tuple[str, int, int] | None:
    """``(mode, byteStride, count)`` for a view worth encoding, or None."""
    target = view.get("target")
    if EXTENSION in view.get("extensions", {}) or target not in (_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER):
        return None
    accessors = [a for a in doc.get("accessors", []) if a.get("bufferView") == index]
    sizes = {_COMPONENT_SIZE[a["componentType"]] * _WIDTH[a["type"]] for a in accessors}
    length = view["byteLength"]
    if target == _ARRAY_BUFFER:
        stride = view.get("byteStride") or (sizes.pop() if len(sizes) == 1 else 0)
        if not stride or stride % 4 or stride > 256 or length % stride:
            return None
        return "ATTRIBUTES", stride, length // stride
    if len(sizes) != 1 or (size := sizes.pop()) not in (2, 4) or length % size:
        return None
    count = length // size
    users = [
        p.get("mode", 4)
        for mesh in doc.get("meshes", [])
        for p in mesh["primitives"]
        if p.get("indices") is not None and doc["accessors"][p["indices"]].get("bufferView") == index
    ]
    triangles = count % 3 == 0 and all(m == 4 for m in users)
    return ("TRIANGLES" if triangles else "INDICES"), size, count


def _encode(raw: bytes, mode: str, stride: int, count: int) -> bytes:
    if mode == "ATTRIBUTES":
        rows = np.frombuffer(raw, np.uint8).reshape(count, stride)
        return meshopt.encode_gltf_buffer(rows, "ATTRIBUTES")
    indices = np.frombuffer(raw, np.uint16 if stride == 2 else np.uint32)
    return meshopt.encode_gltf_buffer(indices, mode)


def _decode(binary: bytes, index: int, view: dict[str, Any], ext: dict[str, Any]) -> bytes:
    where = f"bufferView {index} ({EXTENSION})"
    if ext.get("buffer", 0) != 0:
        raise ValueError(f"{where}: compressed data in buffer {ext.get('buffer')}, not the binary chunk")
    stride, count, mode = ext["byteStride"], ext["count"], ext["mode"]
    if stride * count != view["byteLength"]:
        raise ValueError(f"{where}: byteStride {stride} × count {count} is not the view's {view['byteLength']} bytes")
    data = _slice(binary, ext.get("byteOffset", 0), ext["byteLength"], where)
    try:
        rows = meshopt.decode_gltf_buffer(data, count, stride, mode, ext.get("filter", "NONE"))
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{where}: cannot decode {mode} data ({exc})") from None
    return np.ascontiguousarray(rows).tobytes()


def _slice(binary: bytes, start: int, length: int, where: str) -> bytes:
    if start < 0 or length < 0 or start + length > len(binary):
        raise ValueError(f"{where}: bytes {start}..{start + length} lie outside the {len(binary)}-byte binary chunk")
    return binary[start : start + length]


def _pack(doc: dict[str, Any], binary: bytes) -> bytes:
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # EXT_structural_metadata: the JSON chunk padded to 8 bytes
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    if binary:
        body += struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body
