"""Data Export Service replacement: Dataverse change notifications into SQL databases you own."""

__version__ = "0.1.0"
