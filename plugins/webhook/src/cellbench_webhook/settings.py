"""Settings of the notifier webhook, as a station file's [notifiers.settings] gives
them."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class WebhookSettings(BaseModel):
    """Where the notifier sends, and what."""

    # extra="forbid": a misspelt key in a station file is an error naming the key, not ignored;
    # allow_inf_nan=False: NaN and inf are refused where they enter.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # Replace these with what your service needs: a server, a topic, a token file (never the
    # token itself in a station file). Give every field a default that works for the tests, or
    # give the tests' cases the value.
    logger: str = Field(default="cellbench_webhook", description="the log the messages go to")
    level: Literal["INFO", "WARNING", "ERROR"] = Field(default="INFO",
                                                      description="their log level")
