"""Settings of the ``central-sql`` sync target."""

from __future__ import annotations

import socket

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator


class CentralSqlSettings(BaseModel):
    """Where the central database is, and which station this is there."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    url: str = Field(description="SQLAlchemy URL of the central database, e.g. "
                                 "postgresql+psycopg://cellbench@central/lab")
    station: str = Field(default_factory=socket.gethostname, min_length=1, max_length=255,
                         description="this station's name in every central key (default: the "
                                     "host name); unique among the stations of one database")
    max_rows: int = Field(default=200_000, ge=1,
                          description="samples moved per transaction at most")
    connect_timeout_s: int = Field(default=10, ge=1,
                                   description="how long to wait for the server to answer")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            sa.make_url(value)
        except sa.exc.ArgumentError as err:
            raise ValueError(f"not a SQLAlchemy database URL: {err}") from err
        return value
