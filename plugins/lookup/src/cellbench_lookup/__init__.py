"""Lookup tables from CSV files, offered as an OSI device (``lookup``)."""
