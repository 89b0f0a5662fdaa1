"""Settings of the OSI device scpi-logger, as a station file's [devices.settings] gives them."""

from pydantic import BaseModel, ConfigDict, Field


class ScpiLoggerSettings(BaseModel):
    """What the device needs to know."""

    # extra="forbid": a misspelt key in a station file is an error naming the key, not ignored;
    # allow_inf_nan=False: NaN and inf are refused where they enter.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Replace this with what your device needs: a bus and node id, a serial port, a timeout.
    # Give every field a default that works for the tests, or give the tests' cases the value.
    ambient_c: float = Field(default=25.0, description="the simulated temperature")
