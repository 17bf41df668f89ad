"""Rich output for user code in query mode: ``import backendai_kernel``.

::

    from backendai_kernel import display, display_html, display_image, log
    display_image(png_bytes)               # console item ["media", ["image/png", <base64>]]
    display_html("<b>hi</b>")              # ["html", "<b>hi</b>"]
    display(obj)                           # _repr_png_, _repr_svg_, _repr_html_, else repr
    log("loaded 3 files")                  # ["log", "loaded 3 files"]

No matplotlib needed: anything that can produce PNG bytes can be shown.  An
item larger than ``MAX_ITEM`` bytes is replaced by a note on stderr.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["display", "display_html", "display_image", "log"]

MAX_ITEM = 8 * 1024 * 1024

_emit: Callable[[list[list[Any]]], None] | None = None


def connect(emit: Callable[[list[list[Any]]], None]) -> None:
    """Called once by the query interpreter: where console items go."""
    global _emit
    _emit = emit


def _send(kind: str, data: Any, size: int) -> None:
    if size > MAX_ITEM:
        kind, data = "stderr", f"[{kind} output of {size} bytes not shown: over {MAX_ITEM} bytes]\n"
    if _emit is None:
        print(data if kind != "media" else f"[{data[0]} output: {size} bytes]", file=sys.stdout)
        return
    _emit([[kind, data]])


def display_image(data: bytes, mime: str = "image/png") -> None:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"display_image needs bytes, got {type(data).__name__}")
    _send("media", [mime, base64.b64encode(bytes(data)).decode("ascii")], len(data))


def display_html(html: str) -> None:
    _send("html", str(html), len(html))


def log(message: str) -> None:
    _send("log", str(message), len(message))


def display(obj: Any, mime: str | None = None) -> None:
    """Show *obj*: raw data with *mime*, or by its ``_repr_*_`` methods, else its repr."""
    if mime is not None:
        if isinstance(obj, (bytes, bytearray)):
            display_image(bytes(obj), mime)
        elif mime == "text/html":
            display_html(obj)
        else:
            text = str(obj)
            _send("media", [mime, text], len(text))
        return
    for method, kind in (("_repr_png_", "image/png"), ("_repr_svg_", "image/svg+xml")):
        fn = getattr(obj, method, None)
        if callable(fn):
            data = fn()
            if data is not None:
                display(data, kind)
                return
    html = getattr(obj, "_repr_html_", None)
    if callable(html):
        text = html()
        if text is not None:
            display_html(text)
            return
    print(repr(obj))
