"""The toolkit's version, read by setup.py and written into every file's provenance."""
__version__ = "0.2.0"
