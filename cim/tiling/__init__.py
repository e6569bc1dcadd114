"""3D Tiles 1.1 from the store: layer groups, a quadtree per group, glb content with per-feature metadata, an
atomically swapped output folder. Entry point: :func:`cim.tiling.build.build_tiles`."""
