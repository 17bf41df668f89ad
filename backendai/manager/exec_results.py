"""Execution results as the execute websocket sends them.  Pure.

A run's first message is checked (:func:`parse_first_message`); the frames an
agent's execute channel relays become Backend.AI result objects
(:func:`fold_frames`), and a big result is cut into messages every client
accepts (:func:`split_result`).
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import APIError, InvalidAPIParameters, RPCError
from .exec_api import batch_options, result_json
from .kernel_access import api_error

__all__ = ["MESSAGE_BYTES", "fold_frames", "parse_first_message", "split_result"]

# Console bytes per websocket message (JSON-encoded), give or take one piece.
MESSAGE_BYTES = 256 * 1024
# Output strings are cut into pieces of this many characters (a piece encodes to
# at most six bytes a character), so no message exceeds MESSAGE_BYTES + 6 * _PIECE.
_PIECE = 32 * 1024
_CONTINUED: dict[str, Any] = {"status": "continued", "exitCode": None, "options": {}, "files": []}


def split_result(result: dict[str, Any], limit: int = MESSAGE_BYTES) -> list[dict[str, Any]]:
    """*result* as one or more messages whose console encodes to about *limit* bytes each."""
    pieces: list[tuple[list[Any], int]] = []
    for item in result.get("console") or []:
        kind, data = item[0], item[1]
        if isinstance(data, str) and len(data) > _PIECE:
            for i in range(0, len(data), _PIECE):
                part = [kind, data[i : i + _PIECE]]
                pieces.append((part, len(json.dumps(part))))
        else:
            pieces.append((item, len(json.dumps(item))))
    total = sum(size for _, size in pieces)
    if total <= limit:
        return [result]
    messages: list[dict[str, Any]] = []
    console: list[Any] = []
    size = 0
    for piece, piece_size in pieces:
        if console and size + piece_size > limit:
            messages.append({**result, **_CONTINUED, "console": console})
            console, size = [], 0
        console.append(piece)
        size += piece_size
    messages.append({**result, "console": console})
    return messages


def parse_first_message(raw: str | bytes) -> tuple[str, str, dict[str, Any]]:
    """(mode, code, options) of a run's first message; InvalidAPIParameters says what is wrong."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidAPIParameters(
            f"the first message must be JSON {{mode, code, options}}: {e}"
        ) from None
    if not isinstance(msg, dict):
        raise InvalidAPIParameters("the first message must be a JSON object {mode, code, options}")
    mode = msg.get("mode", "query")
    if mode not in ("query", "batch"):
        raise InvalidAPIParameters(f"mode: invalid value {mode!r}; expected 'query' or 'batch'")
    code = msg.get("code") or ""
    options = msg.get("options") or {}
    if not isinstance(code, str) or not isinstance(options, dict):
        raise InvalidAPIParameters("code must be a string and options an object")
    return mode, code, batch_options(options) if mode == "batch" else options


def fold_frames(
    run_id: str, frames: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], APIError | None, bool]:
    """An agent channel's frames as API results: (results, the error that ended the run,
    whether the run ended).  Console items ride with the status that follows them."""
    results: list[dict[str, Any]] = []
    console: list[list[Any]] = []

    def emit(status: str, **extra: Any) -> None:
        nonlocal console
        results.append(result_json(run_id, {"status": status, "console": console, **extra}))
        console = []

    for frame in frames:
        op = frame.get("op")
        if op == "console":
            for item in frame.get("items") or []:
                if item[0] in ("stdout", "stderr") and console and console[-1][0] == item[0]:
                    console[-1] = [item[0], console[-1][1] + item[1]]
                else:
                    console.append(item)
        elif op == "waiting-input":
            emit("waiting-input", options={"is_password": bool(frame.get("is_password"))})
        elif op == "step":
            emit(str(frame.get("status")), exit_code=frame.get("exit_code"))
        elif op == "finished":
            emit(
                str(frame.get("status")),
                exit_code=frame.get("exit_code"),
                files=frame.get("files") or [],
            )
            return results, None, True
        elif op == "error":
            if console:
                emit("continued")
            status = frame.get("status")
            e = RPCError(
                str(frame.get("message")),
                status=status if isinstance(status, int) else 500,
                detail=str(frame.get("message")),
            )
            return results, api_error(e, f"executing run {run_id}"), True
    if console:
        emit("continued")
    return results, None, False
