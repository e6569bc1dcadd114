"""BIM: IFC files into the city model — assets with their structure, properties, georeference and meshes.

Entry point: :func:`cim.bim.source.read_ifc`, written by :func:`cim.pipeline.ingest.write_source`.
"""
