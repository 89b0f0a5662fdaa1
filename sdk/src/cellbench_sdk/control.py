"""The station-control API an interface plugin (remote control, web) is handed.

A descriptor of kind ``Kind.INTERFACE`` builds an object with ``async start(control)`` and
``async stop()`` (:class:`Interface`); ``start`` receives the serving station's
:class:`StationControl`, through which the interface reads channels and live samples and
starts, stops and queues tests. Every refusal is a :class:`ControlError` whose
:class:`ControlErrorKind` the interface maps to its own error codes.
"""

from cellbench_core.service.control import (
    ChannelInfoView,
    ChannelState,
    ChannelView,
    ControlError,
    ControlErrorKind,
    Interface,
    LiveSample,
    StationControl,
    Subscription,
)

__all__ = [
    "ChannelInfoView",
    "ChannelState",
    "ChannelView",
    "ControlError",
    "ControlErrorKind",
    "Interface",
    "LiveSample",
    "StationControl",
    "Subscription",
]
