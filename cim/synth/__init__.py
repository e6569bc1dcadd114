"""The seeded demo city at Shanghai's real places: GeoParquet layers for the GIS ingest, and IFC towers."""
