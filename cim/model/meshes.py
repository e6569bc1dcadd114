"""Asset meshes as columns: a :class:`MeshBatch` holds the meshes of many assets in flat arrays.

Producers (GIS shapes, CityJSON, IFC geometry) hand over whole batches, the mesh file of the store
(:class:`cim.store.meshes.MeshStore`) keeps them as one row per asset (:meth:`MeshBatch.to_table`), tiling reads them
back; nothing here loops over vertices in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cim.errors import InvalidInput
from cim.model.values import Mesh


@dataclass(frozen=True, slots=True)
class MeshBatch:
    """Meshes of many assets as flat arrays: asset ``i`` owns ``vertices[vertex_offsets[i]:vertex_offsets[i+1]]``
    (float32 ENU metres around ``origins[i]`` = lon, lat, ellipsoidal height) and the triangles
    ``triangles[triangle_offsets[i]:triangle_offsets[i+1]]``, whose indices count from its own first vertex.
    ``colors`` is RGBA in 0…1, NaN where the asset has no colour of its own.

    >>> m = Mesh(asset_id="a", origin=(121.5, 31.2, 0.0), vertices=np.eye(3, dtype=np.float32),
    ...          triangles=np.array([[0, 1, 2]], dtype=np.uint32))
    >>> batch = MeshBatch.from_meshes([m, m])
    >>> len(batch), batch.triangle_offsets.tolist(), batch.to_meshes()[1].triangles.tolist()
    (2, [0, 1, 2], [[0, 1, 2]])
    """

    asset_ids: Sequence[str]
    origins: npt.NDArray[np.float64]
    vertices: npt.NDArray[np.float32]
    vertex_offsets: npt.NDArray[np.int64]
    triangles: npt.NDArray[np.uint32]
    triangle_offsets: npt.NDArray[np.int64]
    colors: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        n = len(self.asset_ids)
        shapes_ok = (
            self.origins.shape == (n, 3)
            and self.vertex_offsets.shape == (n + 1,)
            and self.triangle_offsets.shape == (n + 1,)
            and self.colors.shape == (n, 4)
            and self.vertices.ndim == 2
            and self.vertices.shape[1] == 3
            and self.triangles.ndim == 2
            and self.triangles.shape[1] == 3
            and int(self.vertex_offsets[-1]) == len(self.vertices)
            and int(self.triangle_offsets[-1]) == len(self.triangles)
        )
        if not shapes_ok:
            raise InvalidInput("mesh batch", "arrays and offsets do not agree in length")
        if self.vertices.dtype != np.float32 or self.triangles.dtype != np.uint32:
            raise InvalidInput("mesh batch", "vertices must be float32 and triangles uint32")
        if len(self.triangles):
            counts = np.diff(self.vertex_offsets)
            owner = np.repeat(np.arange(n), np.diff(self.triangle_offsets))
            if bool((self.triangles.max(axis=1) >= counts[owner]).any()):
                raise InvalidInput("mesh batch", "a triangle refers to a vertex its asset does not have")
        if not np.isfinite(self.vertices).all() or not np.isfinite(self.origins).all():
            raise InvalidInput("mesh batch", "vertices and origins must be finite numbers")

    def __len__(self) -> int:
        return len(self.asset_ids)

    @classmethod
    def empty(cls) -> MeshBatch:
        return cls.build([], np.zeros((0, 3)), [], [])

    @classmethod
    def build(
        cls,
        asset_ids: Sequence[str],
        origins: npt.ArrayLike,
        vertices: Sequence[npt.NDArray[np.float32]],
        triangles: Sequence[npt.NDArray[np.uint32]],
        colors: npt.ArrayLike | None = None,
    ) -> MeshBatch:
        """A batch from per-asset arrays (for producers that make one mesh at a time, such as IFC geometry)."""
        n = len(asset_ids)
        vcounts = np.array([len(v) for v in vertices], dtype=np.int64)
        tcounts = np.array([len(t) for t in triangles], dtype=np.int64)
        return cls(
            asset_ids=list(asset_ids),
            origins=np.asarray(origins, dtype=np.float64).reshape(n, 3),
            vertices=np.concatenate(vertices).astype(np.float32, copy=False) if n else np.zeros((0, 3), np.float32),
            vertex_offsets=np.concatenate([[0], np.cumsum(vcounts)]).astype(np.int64),
            triangles=np.concatenate(triangles).astype(np.uint32, copy=False) if n else np.zeros((0, 3), np.uint32),
            triangle_offsets=np.concatenate([[0], np.cumsum(tcounts)]).astype(np.int64),
            colors=(
                np.full((n, 4), np.nan, np.float32)
                if colors is None
                else np.asarray(colors, dtype=np.float32).reshape(n, 4)
            ),
        )

    @classmethod
    def from_meshes(cls, meshes: Sequence[Mesh]) -> MeshBatch:
        return cls.build(
            [m.asset_id for m in meshes],
            [m.origin for m in meshes],
            [m.vertices for m in meshes],
            [m.triangles for m in meshes],
            [m.color if m.color is not None else (np.nan,) * 4 for m in meshes],
        )

    @classmethod
    def concat(cls, batches: Sequence[MeshBatch]) -> MeshBatch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        v_shift = np.cumsum([0] + [len(b.vertices) for b in batches[:-1]])
        t_shift = np.cumsum([0] + [len(b.triangles) for b in batches[:-1]])
        return cls(
            asset_ids=[i for b in batches for i in b.asset_ids],
            origins=np.concatenate([b.origins for b in batches]),
            vertices=np.concatenate([b.vertices for b in batches]),
            vertex_offsets=np.concatenate(
                [[0]] + [b.vertex_offsets[1:] + s for b, s in zip(batches, v_shift, strict=True)]
            ).astype(np.int64),
            triangles=np.concatenate([b.triangles for b in batches]),
            triangle_offsets=np.concatenate(
                [[0]] + [b.triangle_offsets[1:] + s for b, s in zip(batches, t_shift, strict=True)]
            ).astype(np.int64),
            colors=np.concatenate([b.colors for b in batches]),
        )

    def to_meshes(self) -> list[Mesh]:
        out = []
        for i, asset_id in enumerate(self.asset_ids):
            color = self.colors[i]
            out.append(
                Mesh(
                    asset_id=asset_id,
                    origin=(float(self.origins[i, 0]), float(self.origins[i, 1]), float(self.origins[i, 2])),
                    vertices=self.vertices[self.vertex_offsets[i] : self.vertex_offsets[i + 1]],
                    triangles=self.triangles[self.triangle_offsets[i] : self.triangle_offsets[i + 1]],
                    color=None
                    if np.isnan(color).any()
                    else (float(color[0]), float(color[1]), float(color[2]), float(color[3])),
                )
            )
        return out

    def to_table(self, source: str | None) -> pa.Table:
        """One row per asset, vertices and triangles as blobs sliced straight from the flat arrays (no copy per
        asset)."""
        n = len(self)
        vertex_bytes = pa.py_buffer(np.ascontiguousarray(self.vertices).tobytes())
        triangle_bytes = pa.py_buffer(np.ascontiguousarray(self.triangles).tobytes())
        vertices = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer((self.vertex_offsets * 12).astype(np.int64)), vertex_bytes]
        )
        triangles = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), n, [None, pa.py_buffer((self.triangle_offsets * 12).astype(np.int64)), triangle_bytes]
        )
        no_color = np.isnan(self.colors).any(axis=1)
        colors = pa.FixedSizeListArray.from_arrays(
            pa.array(np.nan_to_num(self.colors).ravel()), 4, mask=pa.array(no_color)
        )
        return pa.table(
            {
                "asset_id": pa.array(list(self.asset_ids), pa.string()),
                "source": pa.array([source] * n, pa.string()),
                "lon": self.origins[:, 0],
                "lat": self.origins[:, 1],
                "h": self.origins[:, 2],
                "vertex_count": np.diff(self.vertex_offsets).astype(np.int32),
                "triangle_count": np.diff(self.triangle_offsets).astype(np.int32),
                "vertices": vertices,
                "triangles": triangles,
                "color": colors,
            }
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> MeshBatch:
        """The inverse of :meth:`to_table` (the ``source`` column may be absent)."""
        vertices, vertex_offsets = _unpack_blobs(table.column("vertices"), 12)
        triangles, triangle_offsets = _unpack_blobs(table.column("triangles"), 12)
        color_column = table.column("color").combine_chunks()
        colors = np.full((table.num_rows, 4), np.nan, np.float32)
        if table.num_rows:
            valid = ~np.asarray(color_column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
            if valid.any():
                flat = np.asarray(color_column.filter(pa.array(valid)).flatten().to_numpy(), dtype=np.float32)
                colors[valid] = flat.reshape(-1, 4)
        return cls(
            asset_ids=table.column("asset_id").to_pylist(),
            origins=np.stack(
                [table.column(c).to_numpy().astype(np.float64) for c in ("lon", "lat", "h")], axis=-1
            ).reshape(-1, 3),
            vertices=np.frombuffer(vertices, dtype=np.float32).reshape(-1, 3),
            vertex_offsets=vertex_offsets,
            triangles=np.frombuffer(triangles, dtype=np.uint32).reshape(-1, 3),
            triangle_offsets=triangle_offsets,
            colors=colors,
        )


def _unpack_blobs(column: pa.ChunkedArray, item_size: int) -> tuple[bytes, npt.NDArray[np.int64]]:
    """The concatenated bytes of a binary column and the offsets (in items) where each row starts."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_large_binary(array.type):
        array = array.cast(pa.large_binary())
    if len(array) == 0:
        return b"", np.zeros(1, np.int64)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    blob = data.to_pybytes()[start:end] if data is not None else b""
    return blob, ((offsets - start) // item_size).astype(np.int64)
