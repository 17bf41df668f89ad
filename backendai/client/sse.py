"""An I/O-free decoder of server-sent events (the WHATWG ``text/event-stream`` format).

Feed it lines without their line terminators; it returns an event when a blank
line completes one.  Comments (``:`` lines, used as keep-alives) are skipped,
``data`` lines join with ``\\n``, a field without a colon has an empty value, one
space after the colon is dropped, and an event without data is not dispatched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

__all__ = ["SSEDecoder", "ServerSentEvent", "decode_events"]


@dataclasses.dataclass(frozen=True)
class ServerSentEvent:
    """One event; ``id`` and ``retry`` are the last ones the stream set, as the spec keeps them."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns lines into :class:`ServerSentEvent` values, one blank line at a time."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self._first_line = True

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line; return the event it completes, if any."""
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event, self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(
            event=event or "message", data="\n".join(data), id=self._last_id, retry=self._retry
        )


def decode_events(lines: Iterable[str]) -> list[ServerSentEvent]:
    """Decode whole lines at once (an unfinished last event is dropped)."""
    decoder = SSEDecoder()
    events = []
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            events.append(event)
    return events
