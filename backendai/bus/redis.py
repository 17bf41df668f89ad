"""The Redis event bus: streams for anycast, pub/sub for broadcast (coredis, under Trio).

Anycast to role kind ``k`` appends to the stream ``<prefix>:anycast:<k>`` (capped
near ``stream_maxlen`` entries) and is consumed by the consumer group ``k``:
each entry goes to one consumer, which acknowledges it once its handler
returns.  An entry whose handler raised, or whose consumer died, stays pending;
after ``claim_idle`` seconds any live consumer of the kind claims it
(``XAUTOCLAIM``) and handles it again, up to ``max_deliveries`` times, after
which it is logged and dropped.  Delivery is therefore at least once: a handler
slower than ``claim_idle`` may see its event handled twice.  The group starts at
the beginning of the stream, so events sent before any consumer ran are kept.

Broadcast publishes on the channel ``<prefix>:broadcast``.  A bus holds one
subscription to it (one connection, however many subscribers) and fans events
out in process; each subscriber has a bounded buffer and loses events, with a
warning, when it falls behind.  The subscription outlives a Redis restart
(coredis resubscribes); what was published meanwhile is lost, as pub/sub keeps
nothing.

This is the only module that imports coredis; its errors become
:class:`~backendai.errors.UnavailableError` (Redis does not answer) or
:class:`~backendai.errors.BusError` here.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager, suppress
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

import anyio
import coredis
import coredis.exceptions
import trio
from coredis.patterns.pubsub import PubSub
from coredis.response.types import StreamEntry, StreamPendingExt
from coredis.tokens import PureToken

from ..config import BusConfig
from ..errors import BusError, ConfigError, UnavailableError
from .fanout import Fanout
from .protocol import Event, EventHandler

__all__ = ["RedisEventBus", "open_redis_bus"]

log = logging.getLogger(__name__)

_FIELD = b"event"
_READ_COUNT = 10
_MAX_BLOCK = 5.0  # seconds one XREADGROUP may block before the claim schedule is checked
_MAX_RETRY_DELAY = 10.0
# KEYS[1]: the key's sorted set of request times; ARGV: now, window (s), a unique member.
_SLIDING_WINDOW = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000))
return redis.call('ZCARD', KEYS[1])
"""


def _safe_url(url: str) -> str:
    """*url* without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def _collapse_groups() -> Iterator[None]:
    """Re-raise a group of one exception (coredis's task groups wrap the body's) as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if leaf is group:
            raise
        raise leaf from leaf.__cause__


class RedisEventBus:
    """An :class:`~backendai.bus.EventBus` on one Redis server; see the module docstring."""

    def __init__(
        self,
        client: coredis.Redis[bytes],
        config: BusConfig,
        *,
        claim_idle: float = 30.0,
        max_deliveries: int = 10,
        subscriber_buffer: int = 1024,
    ) -> None:
        self._client = client
        self._url = _safe_url(config.redis_url)
        self._prefix = config.prefix
        self._stream_maxlen = config.stream_maxlen
        self._claim_idle_ms = max(1, round(claim_idle * 1000))
        self._claim_interval = max(claim_idle / 2, 0.01)
        self._max_deliveries = max_deliveries
        self._channel = f"{config.prefix}:broadcast"
        self._fanout = Fanout(subscriber_buffer)

    def _stream(self, kind: str) -> str:
        return f"{self._prefix}:anycast:{kind}"

    @contextmanager
    def _translate(self, doing: str) -> Iterator[None]:
        try:
            yield
        except coredis.exceptions.ConnectionError as e:
            raise UnavailableError(f"Redis at {self._url} does not answer ({doing}): {e}") from e
        except coredis.exceptions.RedisError as e:
            raise BusError(f"Redis at {self._url} refused to {doing}: {e}") from e

    async def _back_off(self, failures: int, what: str, error: Exception) -> None:
        delay = min(0.1 * 2**failures, _MAX_RETRY_DELAY)
        log.warning("%s at %s failed: %r; trying again in %.1fs", what, self._url, error, delay)
        await trio.sleep(delay)

    async def anycast(self, to: str, event: Event) -> None:
        with self._translate(f"append {event.name} to {self._stream(to)}"):
            await self._client.xadd(
                self._stream(to),
                {_FIELD: event.encode()},
                trim_strategy=PureToken.MAXLEN,
                trim_operator=PureToken.APPROXIMATELY,
                threshold=self._stream_maxlen,
            )

    async def broadcast(self, event: Event) -> None:
        with self._translate(f"publish {event.name} on {self._channel}"):
            await self._client.publish(self._channel, event.encode())

    async def hit(self, key: str, now: float, window: float) -> int:
        """A sliding-window count shared by every process on this Redis (rate limits).

        Records a request by *key* at *now* and returns the requests of the last
        *window* seconds, in one atomic script.
        """
        name = f"{self._prefix}:ratelimit:{key}"
        member = f"{now!r}:{secrets.token_hex(4)}"
        with self._translate(f"count requests in {name}"):
            count = await self._client.eval(
                _SLIDING_WINDOW, keys=[name], args=[repr(now), repr(window), member]
            )
        if not isinstance(count, int):
            raise BusError(f"Redis at {self._url} answered {count!r} to a window count")
        return count

    async def _create_group(self, stream: str, group: str) -> None:
        with suppress(coredis.exceptions.StreamDuplicateConsumerGroupError):  # BUSYGROUP
            await self._client.xgroup_create(stream, group, "0", mkstream=True)

    async def serve_anycast(
        self,
        kind: str,
        consumer: str,
        handler: EventHandler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        stream = self._stream(kind)
        with self._translate(f"create consumer group {kind} on {stream}"):
            await self._create_group(stream, kind)
        task_status.started()
        claim_cursor: bytes | None = b"0-0"  # claim right away: a dead consumer may have left some
        next_claim = trio.current_time()
        failures = 0
        while True:
            try:
                if failures:
                    await self._create_group(stream, kind)  # in case the stream was deleted
                if claim_cursor is None and trio.current_time() >= next_claim:
                    claim_cursor = b"0-0"
                if claim_cursor is not None:
                    claim_cursor, entries = await self._claim(stream, kind, consumer, claim_cursor)
                    next_claim = trio.current_time() + self._claim_interval
                else:
                    block = min(max(next_claim - trio.current_time(), 0.001), _MAX_BLOCK)
                    entries = await self._read(stream, kind, consumer, block)
                failures = 0
            except coredis.exceptions.RedisError as e:
                failures += 1
                await self._back_off(failures, f"consumer {consumer} reading {stream}", e)
                continue
            for entry in entries:
                await self._handle(stream, kind, consumer, entry, handler)

    async def _read(
        self, stream: str, group: str, consumer: str, block: float
    ) -> tuple[StreamEntry, ...]:
        found = await self._client.xreadgroup(
            group, consumer, {stream: ">"}, count=_READ_COUNT, block=max(1, round(block * 1000))
        )
        return next(iter(found.values()), ()) if found else ()

    async def _claim(
        self, stream: str, group: str, consumer: str, cursor: bytes
    ) -> tuple[bytes | None, tuple[StreamEntry, ...]]:
        """Claim entries pending longer than claim_idle; drop those delivered too often."""
        reply = await self._client.xautoclaim(
            stream, group, consumer, self._claim_idle_ms, cursor, count=_READ_COUNT
        )
        next_cursor = None if reply[0] == b"0-0" else reply[0]
        entries = tuple(e for e in reply[1] if isinstance(e, StreamEntry))
        if not entries:
            return next_cursor, ()
        first, last = entries[0].identifier, entries[-1].identifier
        pending = await self._client.xpending(
            stream, group, first, last, len(entries), None, consumer
        )
        delivered = {p.identifier: p.delivered for p in pending if isinstance(p, StreamPendingExt)}
        poison = [
            e.identifier for e in entries if delivered.get(e.identifier, 0) > self._max_deliveries
        ]
        if poison:
            log.error(
                "dropping entries %s of %s: delivered more than %d times and never handled",
                poison, stream, self._max_deliveries,
            )  # fmt: skip
            await self._client.xack(stream, group, poison)
        log.info("consumer %s claimed %d stale entries of %s", consumer, len(entries), stream)
        return next_cursor, tuple(e for e in entries if e.identifier not in poison)

    async def _handle(
        self, stream: str, group: str, consumer: str, entry: StreamEntry, handler: EventHandler
    ) -> None:
        try:
            event = Event.decode(entry.field_values[_FIELD])
        except (KeyError, ValueError, TypeError) as e:
            log.error("dropping entry %s of %s: not an event (%r)", entry.identifier, stream, e)
        else:
            try:
                await handler(event)
            except Exception:
                log.exception(
                    "consumer %s failed on %s (entry %s of %s); it is delivered again in %.1fs",
                    consumer, event.name, entry.identifier, stream, self._claim_idle_ms / 1000,
                )  # fmt: skip
                return
        try:
            await self._client.xack(stream, group, [entry.identifier])
        except coredis.exceptions.RedisError as e:
            log.warning(
                "could not acknowledge entry %s of %s at %s (%s); it will be delivered again",
                entry.identifier, stream, self._url, e,
            )  # fmt: skip

    def subscribe(self) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[Event]]:
        return self._fanout.subscribe()

    async def _relay_broadcasts(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Hold this bus's one subscription to the channel; hand each event to every subscriber."""
        started = False
        failures = 0
        while True:
            try:
                with _collapse_groups():
                    async with self._subscription() as pubsub:
                        if not started:
                            task_status.started()
                            started = True
                        failures = 0
                        while True:
                            message = await pubsub.get_message(ignore_subscribe_messages=True)
                            if message is not None and message["type"] == "message":
                                self._fan_out(message["data"])
            except coredis.exceptions.RedisError as e:
                failures += 1
                await self._back_off(failures, f"subscription to {self._channel}", e)

    @asynccontextmanager
    async def _subscription(self) -> AsyncIterator[PubSub[bytes]]:
        try:
            async with self._client.pubsub(channels=[self._channel]) as pubsub:
                yield pubsub
        except* anyio.ClosedResourceError:
            # coredis (6.9) unsubscribes at exit even when a cancellation from outside has
            # closed the connection already; nothing is left to clean up, and a cancellation
            # still pending is raised again at the next checkpoint.
            pass

    def _fan_out(self, data: object) -> None:
        try:
            if not isinstance(data, bytes | str):
                raise TypeError(f"payload of type {type(data).__name__}")
            event = Event.decode(data)
        except (KeyError, ValueError, TypeError) as e:
            log.warning("ignoring a message on %s that is not an event: %r", self._channel, e)
            return
        self._fanout.deliver(event)


@asynccontextmanager
async def open_redis_bus(
    config: BusConfig,
    *,
    claim_idle: float = 30.0,
    max_deliveries: int = 10,
    subscriber_buffer: int = 1024,
    connect_timeout: float = 5.0,
) -> AsyncIterator[RedisEventBus]:
    """Connect to ``config.redis_url``, check that Redis answers, and close at exit.

    The bus holds one subscription to the broadcast channel for its lifetime and
    fans events out to its subscribers.  Raises
    :class:`~backendai.errors.UnavailableError` naming the URL when Redis does not answer.
    """
    url = _safe_url(config.redis_url)
    expected = "expected redis://[:PASSWORD@]HOST:PORT/DB, rediss://... or unix://PATH"
    if urlsplit(config.redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"invalid Redis URL {url!r}; {expected}")
    try:
        client = coredis.Redis.from_url(config.redis_url, connect_timeout=connect_timeout)
    except (ValueError, coredis.exceptions.RedisError) as e:
        raise ConfigError(f"invalid Redis URL {url!r}: {e}; {expected}") from e
    bus = RedisEventBus(
        client,
        config,
        claim_idle=claim_idle,
        max_deliveries=max_deliveries,
        subscriber_buffer=subscriber_buffer,
    )
    with _collapse_groups():
        async with client, trio.open_nursery() as nursery:
            try:
                with trio.fail_after(connect_timeout):
                    await client.ping()
                    await nursery.start(bus._relay_broadcasts)
            except (coredis.exceptions.RedisError, OSError, trio.TooSlowError) as e:
                raise UnavailableError(f"Redis at {url} does not answer: {e!r}") from e
            yield bus
            nursery.cancel_scope.cancel()
