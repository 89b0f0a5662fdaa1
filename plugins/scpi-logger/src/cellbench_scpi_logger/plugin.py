"""Registers the OSI device scpi-logger with cellbench.

cellbench imports this module at every start, so it stays light: it names the factory as a
"module:attr" string, which is imported only when a station uses the OSI device.
"""

from cellbench_sdk import Descriptor, Kind, hookimpl

from cellbench_scpi_logger.settings import ScpiLoggerSettings


@hookimpl
def cellbench_osi_devices() -> list[Descriptor]:
    """The OSI device of this plugin."""
    return [
        Descriptor(
            Kind.OSI_DEVICE,
            # The name station files use; unique among the OSI devices of every plugin.
            "scpi-logger",
            # The factory: called with the validated settings, returns the OSI device.
            "cellbench_scpi_logger.device:ScpiLoggerDevice",
            # One line for `cellbench plugins`: say what it drives or does.
            "simulated signals (replace with your device)",
            ScpiLoggerSettings,
        )
    ]
