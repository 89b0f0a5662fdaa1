"""Settings of the channel driver scpi, as a station file's [channels.settings] gives them."""

from pydantic import BaseModel, ConfigDict, Field


class ScpiSettings(BaseModel):
    """How many channels, and the ranges of each."""

    # extra="forbid": a misspelt key in a station file is an error naming the key, not ignored;
    # allow_inf_nan=False: NaN and inf are refused where they enter.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Replace these with what your instrument needs: host and port, a serial port, a timeout.
    # Give every field a default that works for the tests, or give the tests' cases the value.
    count: int = Field(default=2, ge=1, le=64, description="channels")
    voltage_min_v: float = Field(default=0.0, description="lowest voltage a channel can hold")
    voltage_max_v: float = Field(default=5.0, description="highest voltage a channel can hold")
    current_max_a: float = Field(default=10.0, gt=0, description="largest |current|")
