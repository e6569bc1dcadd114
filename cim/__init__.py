"""City information model server: BIM + GIS + IoT in one model of a city."""

__version__ = "0.1.0"
