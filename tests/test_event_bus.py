"""The EventBus conformance suite, run against the in-process bus and a real Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from backendai.bus import (
    Event,
    EventBus,
    EventHandler,
    MemoryEventBus,
    RedisEventBus,
    open_event_bus,
    open_redis_bus,
)
from backendai.config import BusConfig
from backendai.errors import ConfigError, UnavailableError
from tests.services import redis_bus, require_redis

# Redis hands a failed or orphaned event to a live consumer after this long.
CLAIM_IDLE = 0.3


def event(name: str, i: int) -> Event:
    return Event(name=name, source="test", data={"i": i})


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def bus_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        require_redis()
    return str(request.param)


@pytest.fixture
def redis_ok() -> None:
    require_redis()


@pytest.fixture
async def bus(bus_kind: str) -> AsyncIterator[EventBus]:
    if bus_kind == "memory":
        yield MemoryEventBus()
    else:
        async with redis_bus(claim_idle=CLAIM_IDLE) as redis:
            yield redis


async def test_anycast_goes_to_exactly_one_consumer_of_the_kind(bus: EventBus) -> None:
    n = 40
    handled: list[tuple[str, int]] = []
    all_seen = trio.Event()

    def consumer(name: str) -> EventHandler:
        async def handle(ev: Event) -> None:
            handled.append((name, ev.data["i"]))
            if len({i for _, i in handled}) == n:
                all_seen.set()

        return handle

    async with trio.open_nursery() as nursery:
        for name in ("manager-1", "manager-2"):
            await nursery.start(bus.serve_anycast, "manager", name, consumer(name))
        for i in range(n):
            await bus.anycast("manager", event("heartbeat", i))
        with trio.fail_after(10):
            await all_seen.wait()
        nursery.cancel_scope.cancel()
    assert sorted(i for _, i in handled) == list(range(n))  # each exactly once


async def test_anycast_kinds_are_separate(bus: EventBus) -> None:
    got: dict[str, list[int]] = {"manager": [], "storage": []}
    three = trio.Event()

    def consumer(kind: str) -> EventHandler:
        async def handle(ev: Event) -> None:
            got[kind].append(ev.data["i"])
            if sum(map(len, got.values())) == 3:
                three.set()

        return handle

    async with trio.open_nursery() as nursery:
        for kind in got:
            await nursery.start(bus.serve_anycast, kind, f"{kind}-1", consumer(kind))
        await bus.anycast("manager", event("a", 1))
        await bus.anycast("storage", event("b", 2))
        await bus.anycast("manager", event("c", 3))
        with trio.fail_after(10):
            await three.wait()
        nursery.cancel_scope.cancel()
    assert got == {"manager": [1, 3], "storage": [2]}


async def test_broadcast_reaches_every_subscriber(bus: EventBus) -> None:
    sent = [event("session.started", i) for i in range(3)]
    async with bus.subscribe() as first, bus.subscribe() as second:
        for ev in sent:
            await bus.broadcast(ev)
        with trio.fail_after(10):
            for subscriber in (first, second):
                assert [await subscriber.receive() for _ in sent] == sent


async def test_event_whose_handler_raises_is_delivered_again(bus: EventBus) -> None:
    attempts: list[int] = []
    handled = trio.Event()

    async def flaky(ev: Event) -> None:
        attempts.append(ev.data["i"])
        if len(attempts) == 1:
            raise RuntimeError("transient failure")
        handled.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(bus.serve_anycast, "manager", "manager-1", flaky)
        await bus.anycast("manager", event("kernel.started", 7))
        with trio.fail_after(10):
            await handled.wait()
        nursery.cancel_scope.cancel()
    assert attempts == [7, 7]


async def collect(bus: RedisEventBus, consumer: str, n: int, *, kind: str = "manager") -> list[int]:
    """Run *consumer* until it has handled *n* events; return their numbers."""
    handled: list[int] = []
    enough = trio.Event()

    async def handle(ev: Event) -> None:
        handled.append(ev.data["i"])
        if len(handled) == n:
            enough.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(bus.serve_anycast, kind, consumer, handle)
        with trio.fail_after(10):
            await enough.wait()
        nursery.cancel_scope.cancel()
    return handled


@pytest.mark.redis
@pytest.mark.usefixtures("redis_ok")
async def test_redis_keeps_events_sent_while_no_consumer_runs() -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    async with redis_bus(prefix=prefix) as producer:
        for i in range(3):
            await producer.anycast("manager", event("agent.heartbeat", i))
        # A consumer that starts later, on a connection of its own (as after a restart).
        async with redis_bus(prefix=prefix) as consumer_bus:
            assert await collect(consumer_bus, "manager-1", 3) == [0, 1, 2]


@pytest.mark.redis
@pytest.mark.usefixtures("redis_ok")
async def test_redis_reclaims_events_a_dead_consumer_left_pending() -> None:
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    async with (
        redis_bus(prefix=prefix) as first,
        redis_bus(prefix=prefix, claim_idle=CLAIM_IDLE) as second,
    ):
        for i in range(3):
            await first.anycast("manager", event("kernel.terminated", i))
        stuck = trio.Event()

        async def hang(ev: Event) -> None:
            stuck.set()
            await trio.sleep_forever()

        async with trio.open_nursery() as nursery:
            await nursery.start(first.serve_anycast, "manager", "dying", hang)
            with trio.fail_after(10):
                await stuck.wait()
            nursery.cancel_scope.cancel()  # dies holding the events, unacknowledged
        assert sorted(await collect(second, "survivor", 3)) == [0, 1, 2]


class LogSignal(logging.Handler):
    """Sets ``seen`` when a record containing *needle* is logged."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.seen = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


@pytest.mark.redis
@pytest.mark.usefixtures("redis_ok")
async def test_redis_gives_up_an_event_that_always_fails() -> None:
    attempts: list[int] = []

    async def always_fails(ev: Event) -> None:
        attempts.append(ev.data["i"])
        raise RuntimeError("poison")

    gave_up = LogSignal("delivered more than 2 times and never handled")
    logger = logging.getLogger("backendai.bus.redis")
    logger.addHandler(gave_up)
    try:
        async with (
            redis_bus(claim_idle=0.05, max_deliveries=2) as bus,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(bus.serve_anycast, "manager", "manager-1", always_fails)
            await bus.anycast("manager", event("kernel.started", 9))
            with trio.fail_after(10):
                await gave_up.seen.wait()
            nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(gave_up)
    assert attempts == [9, 9]


@pytest.mark.redis
@pytest.mark.usefixtures("redis_ok")
async def test_redis_bus_closes_when_cancelled_while_in_use() -> None:
    async def ignore(ev: Event) -> None:
        pass

    for _ in range(5):  # the connections' state at cancellation varies from run to run
        with trio.CancelScope() as shutdown:
            async with redis_bus() as bus, trio.open_nursery() as nursery:
                await nursery.start(bus.serve_anycast, "manager", "manager-1", ignore)
                async with bus.subscribe() as events:
                    await bus.broadcast(event("tick", 1))
                    with trio.fail_after(10):
                        assert (await events.receive()).data["i"] == 1
                    shutdown.cancel()  # as a role's shutdown: bus, consumer and subscriber at once
                    await trio.sleep_forever()
        assert shutdown.cancelled_caught


async def test_invalid_redis_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid Redis URL 'localhost:6379'"):
        async with open_redis_bus(BusConfig(kind="redis", redis_url="localhost:6379")):
            pass


async def test_redis_that_does_not_answer_is_unavailable_without_showing_the_password() -> None:
    config = BusConfig(kind="redis", redis_url="redis://:hunter2@127.0.0.1:1/0")
    with pytest.raises(UnavailableError, match=r"127\.0\.0\.1:1") as info:
        async with open_redis_bus(config, connect_timeout=2):
            pass
    assert "hunter2" not in str(info.value)
    with pytest.raises(UnavailableError):
        async with open_event_bus(config):
            pass


async def test_open_event_bus_memory_needs_no_server() -> None:
    async with open_event_bus(BusConfig(kind="memory")) as bus:
        assert isinstance(bus, MemoryEventBus)
