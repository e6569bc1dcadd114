"""The geometry children against ifcopenshell's own geometry iterator, on the shared IFC files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cim.bim.geometry
from cim.bim.geometry import Geometry, iterator
from cim.bim.reader import open_ifc

# the files where the manifold iterator neither crashes (duplex.ifc) nor meshes nothing (geographic-referencing.ifc)
ITERABLE = (
    "AC20-FZK-Haus.ifc",
    "IfcOpenHouse_IFC4.ifc",
    "PR-Twin-Branch-PavementElements.ifc",
    "linear-placement-of-signal.ifc",
)


@pytest.mark.parametrize("name", ITERABLE)
def test_children_mesh_what_the_iterator_meshes(name: str, data_dir: Path) -> None:
    """Element by element, the kernel gives each element the vertices, triangles and colour the iterator gives."""
    opened = open_ifc(data_dir / "ifc" / name)
    model = opened.model
    expected = {}
    shapes = iterator(model, "manifold")
    assert shapes is not None and shapes.initialize()
    while True:
        shape = shapes.get()
        part = cim.bim.geometry._part(shape.id, shape.geometry)
        if part[2]:  # the ingest keeps meshes with triangles only
            expected[shape.id] = part
        if not shapes.next():
            break
    del shapes
    found = {}
    with Geometry(model, str(opened.path)) as geometry:
        for batch in geometry.batches(expected):
            for i, step_id in enumerate(batch.step_ids.tolist()):
                v, t = batch.vertex_offsets[i : i + 2], batch.triangle_offsets[i : i + 2]
                found[step_id] = (batch.vertices[v[0] : v[1]], batch.triangles[t[0] : t[1]], batch.colors[i])
        assert not geometry.failures
    assert expected and found.keys() == expected.keys()
    for step_id, (_, vertices, faces, color) in expected.items():
        got_vertices, got_triangles, got_color = found[step_id]
        assert np.array_equal(got_vertices, np.frombuffer(vertices, np.float64).reshape(-1, 3))
        assert np.array_equal(got_triangles, np.frombuffer(faces, np.int32).reshape(-1, 3))
        assert np.array_equal(got_color, np.array(color or (np.nan,) * 4, np.float32), equal_nan=True)


@pytest.mark.parametrize("name", ["duplex.ifc", "geographic-referencing.ifc"])
def test_one_or_two_children_give_the_same_meshes_and_failures(
    name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also where the manifold kernel crashes on an element (duplex.ifc: the child that meshed it dies, the rest of
    its share is meshed again) or no kernel can mesh one (geographic-referencing.ifc)."""
    opened = open_ifc(data_dir / "ifc" / name)
    model = opened.model
    wanted = sorted(
        e.id() for c in cim.bim.structure.mesh_classes(model) for e in model.by_type(c, include_subtypes=False)
    )
    found = []
    for workers in (1, 2):
        monkeypatch.setattr(cim.bim.geometry, "WORKERS", workers)
        sizes: dict[int, tuple[int, int]] = {}
        with Geometry(model, str(opened.path)) as geometry:
            for batch in geometry.batches(wanted):
                vertices, triangles = np.diff(batch.vertex_offsets).tolist(), np.diff(batch.triangle_offsets).tolist()
                sizes.update(zip(batch.step_ids.tolist(), zip(vertices, triangles, strict=True), strict=True))
            found.append((sizes, geometry.failures))
    assert found[0][0] or found[0][1]  # meshes, or the failure
    assert found[0] == found[1]
