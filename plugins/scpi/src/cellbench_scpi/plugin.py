"""Registers the channel driver scpi with cellbench.

cellbench imports this module at every start, so it stays light: it names the factory as a
"module:attr" string, which is imported only when a station uses the channel driver.
"""

from cellbench_sdk import Descriptor, Kind, hookimpl

from cellbench_scpi.settings import ScpiSettings


@hookimpl
def cellbench_channel_drivers() -> list[Descriptor]:
    """The channel driver of this plugin."""
    return [
        Descriptor(
            Kind.CHANNEL_DRIVER,
            # The name station files use; unique among the channel drivers of every plugin.
            "scpi",
            # The factory: called with the validated settings, returns the channel driver.
            "cellbench_scpi.driver:ScpiDriver",
            # One line for `cellbench plugins`: say what it drives or does.
            "simulated channels (replace with your cycler)",
            ScpiSettings,
        )
    ]
