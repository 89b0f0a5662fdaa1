"""cellbench sync target ``sqlite-backup``: a continuously updated, always consistent SQLite copy
of a station's database that any SQLite tool can open while tests run (docs/sync.md)."""
