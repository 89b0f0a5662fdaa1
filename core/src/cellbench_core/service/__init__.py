"""The long-lived station (``cellbench serve``): runs the tests of the test queue on the station's
channels until it is stopped."""

from cellbench_core.service.station_service import StationService

__all__ = ["StationService"]
