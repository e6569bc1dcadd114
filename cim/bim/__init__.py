"""BIM: IFC files into the city model — assets with their structure, properties, georeference and meshes.

Entry point: :func:`cim.bim.ingest.ingest_ifc`.
"""
