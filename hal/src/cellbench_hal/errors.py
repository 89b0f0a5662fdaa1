"""Typed errors raised by devices and transports.

The runner turns any :class:`DeviceError` into the configured safe state for the channels behind
that device; it never holds the last value of a device that stopped answering.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A device failed; ``device`` names it (driver name and address) for the operator."""

    def __init__(self, device: str, message: str) -> None:
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message


class DeviceTimeout(DeviceError):
    """A device call did not complete within its timeout."""


class DeviceConnectionError(DeviceError):
    """A device could not be opened, or its connection was lost."""


class DeviceClosed(DeviceConnectionError):
    """A call reached a device or transport that is not open (never opened, closed, or lost)."""


class BadReply(DeviceError):
    """A device's reply could not be understood: not text, too long, or malformed."""


class OutOfRange(DeviceError):
    """A setpoint lies outside what the device can do (its ranges or its signals)."""


class NotSupported(DeviceError):
    """The device lacks the requested capability (for example humidity on a chamber without it)."""
