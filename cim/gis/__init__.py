"""GIS layers into the city model: readers (GDAL via pyogrio), declarative layer mappings, data-quality findings."""
