"""Resource slots (backendai.sched.slots): human units, exact arithmetic, validation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from backendai.errors import InvalidAPIParameters
from backendai.sched import KNOWN_SLOTS, ResourceSlots, format_bytes, parse_bytes

K, M, G, T, P = (1024**i for i in range(1, 6))


def slots(**amounts: str | int) -> ResourceSlots:
    return ResourceSlots({k.replace("_", "."): Decimal(v) for k, v in amounts.items()})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("4g", 4 * G),
        ("512m", 512 * M),
        ("1.5g", 3 * G // 2),
        ("0.5k", 512),
        ("2t", 2 * T),
        ("1p", P),
        ("4G", 4 * G),
        ("4GiB", 4 * G),
        ("4gb", 4 * G),
        ("4 g", 4 * G),
        ("  64k  ", 64 * K),
        ("1073741824", G),
        ("0", 0),
        ("100b", 100),
        (1024, 1024),
        (0, 0),
        (Decimal("2048"), 2048),
        (2.0, 2),
        # Fractions of a byte round to a whole byte.
        ("1.7", 2),
        (0.25, 0),
    ],
)
def test_parse_bytes(raw: Any, expected: int) -> None:
    parsed = parse_bytes(raw)
    assert parsed == expected
    assert isinstance(parsed, Decimal)
    assert parsed == parsed.to_integral_value()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "mem: invalid size ''; expected bytes like 4g, 512m or 1073741824"),
        ("lots", "mem: invalid size 'lots'; expected bytes like 4g"),
        ("4x", "mem: invalid size '4x'"),
        ("4gg", "mem: invalid size '4gg'"),
        ("-1g", "mem: invalid size '-1g'"),
        ("1e3", "mem: invalid size '1e3'"),
        ("1,5g", "mem: invalid size '1,5g'"),
        ("g", "mem: invalid size 'g'"),
        (-5, "mem: negative size -5"),
        (-0.5, "mem: negative size -0.5"),
        (Decimal("-1"), "mem: negative size Decimal('-1')"),
        (True, "mem: invalid size True; expected bytes like 4g or 512m"),
        (float("inf"), "mem: invalid size inf; expected a finite number of bytes"),
        (float("nan"), "mem: invalid size nan; expected a finite number of bytes"),
    ],
)
def test_parse_bytes_rejects_with_the_value(raw: Any, message: str) -> None:
    with pytest.raises(InvalidAPIParameters) as info:
        parse_bytes(raw)
    assert message in str(info.value)


def test_parse_bytes_names_where_the_value_came_from() -> None:
    with pytest.raises(InvalidAPIParameters, match=r"^agent\.mem: invalid size 'x'"):
        parse_bytes("x", where="agent.mem")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (1023, "1023"),
        (K, "1k"),
        (3 * K // 2, "1.5k"),
        (512 * M, "512m"),
        (4 * G, "4g"),
        (3 * G // 2, "1.5g"),
        (2 * T, "2t"),
        (P, "1p"),
        (1024 * P, "1024p"),
        # Not a whole number of units: one decimal.
        (1500, "1.5k"),
        (G + 1, "1.0g"),
        (Decimal(4 * G), "4g"),
    ],
)
def test_format_bytes(value: int | Decimal, expected: str) -> None:
    assert format_bytes(value) == expected


@pytest.mark.parametrize("text", ["1k", "512m", "4g", "1.5g", "3t", "1p", "1023"])
def test_format_bytes_round_trips_exact_values(text: str) -> None:
    assert format_bytes(parse_bytes(text)) == text


# -- parsing a slot mapping ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"cpu": 2, "mem": "4g"}, slots(cpu=2, mem=4 * G)),
        ({"cpu": "0.5", "mem": 1024}, slots(cpu="0.5", mem=1024)),
        ({"cpu": 0.1}, slots(cpu="0.1")),  # from the float's shortest repr, not its binary value
        ({"cpu": "1.25", "cuda.shares": "0.2"}, slots(cpu="1.25", cuda_shares="0.2")),
        ({"cuda.device": 2, "rocm.device": "1"}, slots(cuda_device=2, rocm_device=1)),
        ({"cpu": 0, "mem": "0"}, ResourceSlots()),
        ({}, ResourceSlots()),
    ],
)
def test_parse_slots(raw: dict[str, Any], expected: ResourceSlots) -> None:
    assert ResourceSlots.parse(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cpu": "two"}, "cpu: invalid amount 'two'; expected a number"),
        ({"cpu": -1}, "cpu: invalid amount -1; expected a number >= 0"),
        ({"cpu": "-0.5"}, "cpu: invalid amount '-0.5'; expected a number >= 0"),
        ({"cpu": "nan"}, "cpu: invalid amount 'nan'; expected a number >= 0"),
        ({"cpu": float("inf")}, "cpu: invalid amount inf; expected a number >= 0"),
        ({"cpu": True}, "cpu: invalid amount True; expected a number"),
        ({"cpu": None}, "cpu: invalid amount None; expected a number"),
        ({"cpu": [1]}, "cpu: invalid amount [1]; expected a number"),
        ({"cuda.device": "1g"}, "cuda.device: invalid amount '1g'; expected a number"),
        ({"mem": "4 gigs"}, "mem: invalid size '4 gigs'"),
        ({"mem": -1}, "mem: negative size -1"),
    ],
)
def test_parse_slots_rejects_bad_amounts_naming_slot_and_value(
    raw: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidAPIParameters) as info:
        ResourceSlots.parse(raw)
    assert message in str(info.value)


@pytest.mark.parametrize("name", ["gpu", "memory", "CPU", "cuda", "cuda.devices", ""])
def test_unknown_slot_is_rejected_listing_known_slots(name: str) -> None:
    with pytest.raises(InvalidAPIParameters) as info:
        ResourceSlots.parse({"cpu": 1, name: 1})
    message = str(info.value)
    assert f"unknown resource slot {name!r}" in message
    assert "known slots: " + ", ".join(sorted(KNOWN_SLOTS)) in message


def test_known_slots_can_be_narrowed() -> None:
    with pytest.raises(InvalidAPIParameters, match=r"'cuda.device'; known slots: cpu, mem$"):
        ResourceSlots.parse({"cuda.device": 1}, known=["cpu", "mem"])


# -- arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "total", "difference"),
    [
        (slots(cpu="0.1"), slots(cpu="0.2"), slots(cpu="0.3"), slots(cpu="-0.1")),
        (
            slots(cpu=2, mem=4 * G),
            slots(mem=G),
            slots(cpu=2, mem=5 * G),
            slots(cpu=2, mem=3 * G),
        ),
        (slots(cpu=1), slots(cuda_shares="0.5"), slots(cpu=1, cuda_shares="0.5"), None),
        (slots(cpu="1.5"), slots(cpu="1.5"), slots(cpu=3), ResourceSlots()),
        (ResourceSlots(), ResourceSlots(), ResourceSlots(), ResourceSlots()),
    ],
)
def test_add_and_subtract_exactly(
    a: ResourceSlots, b: ResourceSlots, total: ResourceSlots, difference: ResourceSlots | None
) -> None:
    assert a + b == total
    assert b + a == total
    assert (a + b) - b == a
    if difference is not None:
        assert a - b == difference


def test_no_drift_over_many_allocate_release_cycles() -> None:
    capacity = ResourceSlots.parse({"cpu": 8, "mem": "16g", "cuda.shares": 1})
    request = ResourceSlots.parse({"cpu": "0.1", "mem": "0.25g", "cuda.shares": "0.01"})
    occupied = ResourceSlots()
    for _ in range(10_000):
        occupied = occupied + request
        occupied = occupied - request
    assert occupied == ResourceSlots()
    assert len(occupied) == 0

    for _ in range(10_000):
        occupied = occupied + request
    assert occupied == slots(cpu=1000, mem=2500 * G, cuda_shares=100)
    for _ in range(10_000):
        occupied = occupied - request
    assert occupied == ResourceSlots()
    assert (capacity - occupied) == capacity

    # The same with floats drifts, which is why slots are Decimals.
    drift = 0.0
    for _ in range(10_000):
        drift += 0.1
    assert drift != 1000.0


def test_zero_amounts_are_dropped_and_missing_slots_are_zero() -> None:
    s = slots(cpu=1) - slots(cpu=1)
    assert s == ResourceSlots()
    assert len(s) == 0
    assert list(s) == []
    assert "cpu" not in s
    assert s["cpu"] == 0
    assert s["cuda.device"] == 0
    assert hash(slots(cpu=1, mem=2)) == hash(slots(mem=2, cpu=1))


@pytest.mark.parametrize(
    ("request_", "capacity", "fits", "shortfall"),
    [
        (slots(cpu=2, mem=G), slots(cpu=4, mem=2 * G), True, {}),
        (slots(cpu=4, mem=2 * G), slots(cpu=4, mem=2 * G), True, {}),
        (slots(cpu="4.01"), slots(cpu=4, mem=G), False, {"cpu": Decimal("0.01")}),
        (
            slots(cpu=8, mem=4 * G),
            slots(cpu=4, mem=G),
            False,
            {"cpu": Decimal(4), "mem": Decimal(3 * G)},
        ),
        (slots(cuda_device=1), slots(cpu=64, mem=T), False, {"cuda.device": Decimal(1)}),
        (ResourceSlots(), ResourceSlots(), True, {}),
    ],
)
def test_fits_in_and_shortfall(
    request_: ResourceSlots, capacity: ResourceSlots, fits: bool, shortfall: dict[str, Decimal]
) -> None:
    assert request_.fits_in(capacity) is fits
    assert request_.shortfall(capacity) == shortfall


# -- display and serialisation --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (slots(cpu=2, mem=4 * G), "cpu=2 mem=4g"),
        (slots(mem=512 * M, cpu="0.5"), "cpu=0.5 mem=512m"),
        (slots(cpu="1.50"), "cpu=1.5"),
        (slots(cpu=10), "cpu=10"),
        (slots(cpu=100), "cpu=100"),
        (slots(cuda_shares="0.25", cuda_device=1), "cuda.device=1 cuda.shares=0.25"),
        (slots(mem=1500), "mem=1.5k"),
        (ResourceSlots(), "nothing"),
    ],
)
def test_human(value: ResourceSlots, expected: str) -> None:
    assert value.human() == expected
    assert repr(value) == f"ResourceSlots({expected})"


@pytest.mark.parametrize(
    "value",
    [slots(cpu="0.1", mem=4 * G), slots(cuda_shares="0.333"), ResourceSlots()],
)
def test_json_round_trip(value: ResourceSlots) -> None:
    encoded = value.to_json()
    assert all(isinstance(v, str) for v in encoded.values())
    assert list(encoded) == sorted(encoded)
    assert ResourceSlots.from_json(encoded) == value
