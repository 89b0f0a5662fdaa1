"""Settings of the ``sqlite-backup`` sync target."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class SqliteBackupSettings(BaseModel):
    """Where the backup file goes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: Path = Field(description="the backup file (created with its directory if missing)")
    max_rows: int = Field(default=200_000, ge=1,
                          description="samples copied per transaction at most")
