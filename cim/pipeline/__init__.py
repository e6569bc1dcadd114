"""Pipelines: declarative files naming a city's sources, store and tiles, and the runner (`cim run`)."""
