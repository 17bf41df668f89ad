"""Serving an ASGI app with Hypercorn on Trio, reporting the bound port."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, NoReturn

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response, request, websocket

from .config import Secret
from .errors import APIError, AuthenticationFailed, UnavailableError

__all__ = ["guard_with_secret", "problem_response", "serve_http"]

log = logging.getLogger(__name__)


def _first_os_error(group: BaseExceptionGroup[BaseException]) -> OSError | None:
    for e in group.exceptions:
        if isinstance(e, OSError):
            return e
        if isinstance(e, BaseExceptionGroup) and (found := _first_os_error(e)) is not None:
            return found
    return None


async def serve_http(
    app: Any,
    host: str,
    port: int,
    name: str,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve *app* on host:port (0: any free port); ``started()`` carries the bound port."""
    cfg = HypercornConfig()
    cfg.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger(f"backendai.http.{name}")
    cfg.keep_alive_timeout = 75
    async with trio.open_nursery() as nursery:
        try:
            binds: list[str] = await nursery.start(serve, app, cfg)
        except (OSError, ExceptionGroup) as e:
            # Hypercorn binds inside its own nursery, so the OSError may come grouped.
            bind_error = e if isinstance(e, OSError) else _first_os_error(e)
            if bind_error is None:
                raise
            raise UnavailableError(
                f"{name}: cannot listen on {cfg.bind[0]}: {bind_error.strerror}"
            ) from e
        bound = int(binds[0].rsplit(":", 1)[1])
        log.info("%s listening on %s", name, ", ".join(binds))
        task_status.started(bound)
    raise AssertionError("hypercorn returned without being cancelled")


def guard_with_secret(app: Any, secret: Secret) -> None:
    """Refuse every request and websocket of *app* (a Quart app) without ``Bearer <secret>``;
    answer our API errors as problem+json."""
    expected = f"Bearer {secret.reveal()}".encode()

    def check(headers: Any) -> None:
        given = headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise AuthenticationFailed("missing or wrong cluster secret")

    @app.before_request  # type: ignore[untyped-decorator]
    async def check_secret() -> None:
        check(request.headers)

    @app.before_websocket  # type: ignore[untyped-decorator]
    async def check_websocket_secret() -> None:
        check(websocket.headers)

    @app.errorhandler(APIError)  # type: ignore[untyped-decorator]
    async def api_error(e: APIError) -> Response:
        return problem_response(e.status, e.slug, str(e))


def problem_response(status: int, slug: str, msg: str) -> Response:
    body = {"type": f"https://api.backend.ai/probs/{slug}", "title": slug, "msg": msg}
    return Response(json.dumps(body), status=status, content_type="application/problem+json")
