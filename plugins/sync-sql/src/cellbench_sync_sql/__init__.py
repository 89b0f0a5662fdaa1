"""cellbench sync target ``central-sql``: copies a station's database continuously into one
central SQL database shared by many stations (docs/sync.md)."""
