"""Big execution results are cut into websocket messages clients accept."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from backendai.errors import Conflict
from backendai.manager.exec_results import fold_frames, split_result


def _joined(messages: list[dict[str, Any]]) -> str:
    return "".join(d for m in messages for k, d in m["console"] if k == "stdout")


def test_a_small_result_is_one_message() -> None:
    result = {"status": "finished", "exitCode": 0, "console": [["stdout", "hi\n"]]}
    assert split_result(result) == [result]


def test_ten_megabytes_of_control_characters_stay_under_a_megabyte_per_message() -> None:
    data = "\x01" * (10 * 1024 * 1024)
    result = {"status": "finished", "exitCode": 3, "console": [["stdout", data]]}
    messages = split_result(result)
    assert all(len(json.dumps(m)) < 1024 * 1024 for m in messages)
    assert [m["status"] for m in messages[:-1]] == ["continued"] * (len(messages) - 1)
    assert (messages[-1]["status"], messages[-1]["exitCode"]) == ("finished", 3)
    assert _joined(messages) == data


@given(
    st.lists(
        st.tuples(st.sampled_from(["stdout", "stderr"]), st.text(max_size=3000)),
        max_size=40,
    ),
    st.integers(min_value=64, max_value=4096),
)
def test_order_and_content_are_kept(items: list[tuple[str, str]], limit: int) -> None:
    result = {"status": "waiting-input", "exitCode": None, "console": [list(i) for i in items]}
    messages = split_result(result, limit)
    flat = [(k, d) for m in messages for k, d in m["console"]]
    assert _merged(flat) == _merged(items)
    assert messages[-1]["status"] == "waiting-input"
    assert all(m["status"] == "continued" for m in messages[:-1])
    for m in messages:
        size = sum(len(json.dumps(item)) for item in m["console"])
        assert size <= limit or len(m["console"]) == 1


def _merged(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for kind, data in items:
        if not data:
            continue
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + data)
        else:
            out.append((kind, data))
    return out


def test_frames_fold_into_results_with_console_riding_on_the_status() -> None:
    frames: list[dict[str, Any]] = [
        {"op": "console", "items": [["stdout", "a"]]},
        {"op": "console", "items": [["stdout", "b"], ["media", ["image/png", "x"]]]},
        {"op": "waiting-input", "is_password": True},
    ]
    results, error, ended = fold_frames("r1", frames)
    assert (error, ended) == (None, False)
    assert [(r["status"], r["console"], r["options"]) for r in results] == [
        ("waiting-input", [["stdout", "ab"], ["media", ["image/png", "x"]]], {"is_password": True})
    ]
    frames = [
        {"op": "step", "status": "build-finished", "exit_code": 0},
        {"op": "console", "items": [["stderr", "oops\n"]]},
        {"op": "finished", "status": "finished", "exit_code": 2, "files": [{"name": "a.png"}]},
    ]
    results, error, ended = fold_frames("r1", frames)
    assert (error, ended) == (None, True)
    assert [(r["runId"], r["status"], r["exitCode"]) for r in results] == [
        ("r1", "build-finished", 0),
        ("r1", "finished", 2),
    ]
    assert results[1]["console"] == [["stderr", "oops\n"]]
    assert results[1]["files"][0]["url"] == "download_single?file=.output/a.png"


def test_output_without_a_status_is_continued_and_an_error_ends_the_run() -> None:
    results, error, ended = fold_frames("r2", [{"op": "console", "items": [["stdout", "x"]]}])
    assert ([r["status"] for r in results], error, ended) == (["continued"], None, False)
    frames = [
        {"op": "console", "items": [["stdout", "partial"]]},
        {"op": "error", "status": 409, "message": "run 'r0' is in progress"},
    ]
    results, error, ended = fold_frames("r2", frames)
    assert [r["console"] for r in results] == [[["stdout", "partial"]]]
    assert isinstance(error, Conflict)
    assert "run 'r0' is in progress" in str(error)
    assert ended
