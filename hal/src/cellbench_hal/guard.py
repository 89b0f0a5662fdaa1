"""The rule that a closed device refuses calls, written once for every device and transport."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from cellbench_hal.errors import DeviceClosed

T = TypeVar("T")


class Named(Protocol):
    """Anything with a ``name`` for errors: a device, a transport."""

    @property
    def name(self) -> str: ...


class WhileOpen(Generic[T]):
    """What a device or transport holds while it is open: a clock, a socket, a library handle.

    :meth:`get` hands it out, or raises :class:`DeviceClosed` naming ``owner`` when the owner
    was never opened, was closed, or lost its connection (then the error gives the reason)::

        class Gauge(OsiDevice):
            def __init__(self) -> None:
                self._clock = WhileOpen[Clock](self)

            async def open(self, clock: Clock) -> None:
                self._clock.set(clock)

            async def close(self) -> None:
                self._clock.clear()

            async def read(self) -> Mapping[str, Reading]:
                now = self._clock.get().now()  # refused unless open
                ...

    Setting and clearing are single assignments, so another thread may call :meth:`get`
    meanwhile; releasing the value that :meth:`clear` returns is the owner's job.
    """

    __slots__ = ("_owner", "_reason", "_value")

    def __init__(self, owner: Named) -> None:
        self._owner = owner
        self._value: T | None = None
        self._reason = ""

    @property
    def is_open(self) -> bool:
        """True between :meth:`set` and :meth:`clear`."""
        return self._value is not None

    def get(self) -> T:
        """The value held while open; :class:`DeviceClosed` naming the owner otherwise."""
        value = self._value
        if value is None:
            raise DeviceClosed(self._owner.name,
                               f"not open ({self._reason})" if self._reason else "not open")
        return value

    def set(self, value: T) -> None:
        """Mark the owner open, holding ``value`` (not None, which means closed)."""
        if value is None:
            raise TypeError(f"{self._owner.name}: WhileOpen.set needs a value, not None")
        self._value = value
        self._reason = ""

    def clear(self, reason: str = "") -> T | None:
        """Mark the owner closed; ``reason`` (such as "connection lost: ...") goes into later
        errors. Returns the value held until now, if any, for the owner to release."""
        value, self._value = self._value, None
        self._reason = reason
        return value
