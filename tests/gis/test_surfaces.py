"""CityJSON's surfaces triangulated a batch of objects at a time: holes stay open, lines give nothing, and every
object gets back its own triangles as indices into the shared vertices."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from cim.gis.surfaces import Rings, triangulate_objects

#: A 10 m square in lon/lat (about), flat, with a 4 m square hole in its middle, and spare points.
D = 1e-5
POINTS = np.array(
    [
        *[[0, 0, 0], [10 * D, 0, 0], [10 * D, 10 * D, 0], [0, 10 * D, 0]],  # 0-3 outer, counter-clockwise from above
        *[[3 * D, 3 * D, 0], [3 * D, 7 * D, 0], [7 * D, 7 * D, 0], [7 * D, 3 * D, 0]],  # 4-7 hole, clockwise
        *[[20 * D, 0, 0], [30 * D, 0, 0], [40 * D, 0, 0]],  # 8-10 on one line
        *[[20 * D, 0, 5], [20 * D, 10 * D, 5], [30 * D, 10 * D, 5]],  # 11-13 a triangle 5 m up
    ],
    dtype=np.float64,
)


def area(triangles: np.ndarray) -> float:
    return float(shapely.union_all(shapely.polygons(POINTS[triangles][:, :, :2])).area)


def test_a_hole_is_left_open_and_the_triangles_face_up_as_the_ring_runs() -> None:
    (triangles,) = triangulate_objects([Rings.from_surfaces([[[0, 1, 2, 3], [4, 5, 6, 7]]])], POINTS)
    assert area(triangles) == pytest.approx((100 - 16) * D * D)
    centres = POINTS[triangles].mean(axis=1)
    assert not shapely.contains_xy(shapely.box(3 * D, 3 * D, 7 * D, 7 * D), centres[:, 0], centres[:, 1]).any()
    a, b, c = (POINTS[triangles[:, n]] for n in range(3))
    assert (np.cross(b - a, c - a)[:, 2] > 0).all()  # counter-clockwise outer ring: facing up


def test_a_ring_in_a_line_gets_no_triangles_and_a_two_point_hole_is_ignored() -> None:
    line = Rings.from_surfaces([[[8, 9, 10]], [[8, 10, 9, 8]]])
    square = Rings.from_surfaces([[[0, 1, 2, 3], [4, 5]]])
    found_line, found_square = triangulate_objects([line, square], POINTS)
    assert found_line.shape == (0, 3)
    assert area(found_square) == pytest.approx(100 * D * D)


def test_each_object_gets_its_own_triangles_as_indices_into_the_shared_points() -> None:
    objects = [
        Rings.from_surfaces([[[11, 12, 13]]]),
        Rings.from_surfaces([[[0, 1, 2, 3], [4, 5, 6, 7]]]),
        Rings.from_surfaces([[[8, 9, 10]]]),
        Rings.from_surfaces([[[0, 1, 2]], [[11, 12, 13]]]),
    ]
    triangle, holed, line, two = triangulate_objects(objects, POINTS)
    assert triangle.tolist() == [[11, 12, 13]]
    assert set(holed.ravel()) == set(range(8)) and len(line) == 0
    assert sorted(map(tuple, two.tolist())) == [(0, 1, 2), (11, 12, 13)]


def test_a_ring_nested_deeper_than_indices_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a list of vertex indices"):
        Rings.from_surfaces([[[[0, 1, 2], [1, 2, 3], [2, 3, 0]], [[4, 5, 6]]]])
