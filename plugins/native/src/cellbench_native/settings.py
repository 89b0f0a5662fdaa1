"""Settings of a native driver library, as a station file's [devices.settings] or
[channels.settings] gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Where a library runs: a host process of its own, or the station's process.
Isolation = Literal["process", "in-process"]


class NativeSettings(BaseModel):
    """Which library to load, what to open with it, and how it is isolated and timed."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    library: Path = Field(description="the vendor library (.so, .dll, .dylib) built against "
                          "cellbench_driver.h")
    config: str = Field(default="", description="text handed to cb_open: which instrument, "
                        "port or address the library should open")
    isolation: Isolation = Field(
        default="process", description="process: the library runs in a host process of its "
        "own, so a crash or hang becomes a device error; in-process: loaded into the station "
        "itself (faster, but a crash takes the station down)")
    call_timeout_s: float = Field(default=1.0, gt=0, le=60,
                                  description="seconds any call into the library may take")
    start_timeout_s: float = Field(default=10.0, gt=0, le=120,
                                   description="seconds the host process may take to start and "
                                   "open the library")
    restart_delay_s: float = Field(default=1.0, ge=0, le=60,
                                   description="after a host process failed to restart, "
                                   "seconds before the next attempt (doubling with each "
                                   "failure, up to 60 s)")
    max_samples: int = Field(default=1024, ge=1, le=1_000_000,
                             description="channel banks: most samples one cb_measure may return")

    @property
    def device_name(self) -> str:
        """The name errors and logs use."""
        return f"native:{self.library.name}"
