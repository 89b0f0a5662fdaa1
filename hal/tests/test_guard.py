"""WhileOpen: the one rule that a device or transport that is not open refuses calls."""

from __future__ import annotations

import pytest

from cellbench_hal import DeviceClosed, DeviceConnectionError, WhileOpen


class Gauge:
    name = "gauge@10.0.0.7"


def test_refuses_until_set_and_after_clear_with_the_owner_name_and_reason() -> None:
    handle = WhileOpen[int](Gauge())
    assert not handle.is_open
    with pytest.raises(DeviceClosed, match="^gauge@10.0.0.7: not open$"):
        handle.get()
    handle.set(7)
    assert handle.is_open and handle.get() == 7
    assert handle.clear("connection lost: reset by peer") == 7
    with pytest.raises(DeviceConnectionError,
                       match=r"^gauge@10.0.0.7: not open \(connection lost: reset by peer\)$"):
        handle.get()
    assert handle.clear() is None
    handle.set(8)
    assert handle.get() == 8  # open again: the old reason is gone


def test_none_is_not_a_value_to_hold() -> None:
    with pytest.raises(TypeError, match="gauge@10.0.0.7: WhileOpen.set needs a value"):
        WhileOpen[object](Gauge()).set(None)
