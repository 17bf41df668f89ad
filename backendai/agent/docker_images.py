"""Docker pulls and pushes: the Docker engine talks to the registry, we relay its progress.

docker-py streams the engine's JSON progress messages from a blocking generator; we read
it in a worker thread and hand each message to the Trio side with
``trio.from_thread.run_sync``.  The thread may be abandoned when the caller is cancelled
(a pull timeout): it then stops at the next message and closes the stream, which makes
the engine give up the pull.  docker-py's errors become
:class:`~backendai.errors.ImagePullError` (pull) or
:class:`~backendai.errors.ImageBuildError` (push) here, with the engine's message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import docker
import docker.errors
import requests.exceptions
import trio

from ..errors import (
    BackendUnavailable,
    ConfigError,
    ImageBuildError,
    ImagePullError,
    InvalidAPIParameters,
)
from ..registry import RegistrySpec, parse_reference
from .pulling import classify_pull_error

__all__ = ["docker_pull", "push_image", "push_target", "split_for_docker"]

log = logging.getLogger(__name__)

Feed = Callable[[Mapping[str, Any]], None]


def split_for_docker(name: str) -> tuple[str, str]:
    """``host/repo:tag`` -> (``host/repo``, ``tag``) as docker-py's pull and push want them."""
    ref = parse_reference(name)
    repository = f"{ref.host}/{ref.repository}" if ref.host else ref.repository
    return repository, ref.digest or ref.tag


def _auth_config(registry: RegistrySpec) -> dict[str, str] | None:
    if not registry.username:
        return None
    return {
        "username": registry.username,
        "password": registry.password.reveal(),
        "serveraddress": registry.host,
    }


def _pull_sync(
    api: Callable[[], docker.APIClient],
    name: str,
    registry: RegistrySpec,
    feed: Feed,
    abandoned: threading.Event,
) -> None:
    repository, tag = split_for_docker(name)
    try:
        stream = api().pull(
            repository, tag=tag, stream=True, decode=True, auth_config=_auth_config(registry)
        )
        try:
            for message in stream:
                if abandoned.is_set():
                    log.info("pull of %s abandoned; closing the engine's stream", name)
                    return
                trio.from_thread.run_sync(feed, message)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    except docker.errors.APIError as e:
        text = str(e.explanation or e)
        raise ImagePullError(
            f"Docker could not pull {name} from registry {registry.name!r}: {text}",
            reason=classify_pull_error(text),
        ) from None
    except requests.exceptions.RequestException as e:
        raise BackendUnavailable(f"Docker engine failed while pulling {name}: {e}") from e
    except trio.RunFinishedError:
        return  # the agent is gone; nobody waits for this pull


async def docker_pull(
    api: Callable[[], docker.APIClient],
    name: str,
    registry: RegistrySpec,
    feed: Feed,
    limiter: trio.CapacityLimiter,
) -> None:
    """Pull *name* with *registry*'s credentials; *feed* gets each progress message."""
    abandoned = threading.Event()
    try:
        await trio.to_thread.run_sync(
            _pull_sync,
            api,
            name,
            registry,
            feed,
            abandoned,
            limiter=limiter,
            abandon_on_cancel=True,
        )
    finally:
        abandoned.set()


def push_image(
    local: str,
    target: str,
    *,
    username: str = "",
    password: str = "",
    docker_url: str = "",
    on_progress: Callable[[Mapping[str, Any]], None] | None = None,
) -> str:
    """Tag *local* as *target* and push it; returns the pushed manifest's digest (blocking)."""
    try:
        client = docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
    except docker.errors.DockerException as e:
        raise BackendUnavailable(f"cannot reach the Docker engine to push {target}: {e}") from e
    repository, tag = split_for_docker(target)
    auth = {"username": username, "password": password} if username else None
    digest = ""
    try:
        client.api.tag(local, repository, tag)
        for message in client.api.push(repository, tag, stream=True, decode=True, auth_config=auth):
            if on_progress is not None:
                on_progress(message)
            error = message.get("error") or (message.get("errorDetail") or {}).get("message")
            if error:
                raise ImageBuildError(
                    f"pushing {target} failed ({classify_pull_error(str(error))}): {error}"
                )
            aux = message.get("aux")
            if isinstance(aux, Mapping) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as e:
        raise ImageBuildError(f"Docker could not push {target}: {e.explanation or e}") from e
    except requests.exceptions.RequestException as e:
        raise BackendUnavailable(f"Docker engine failed while pushing {target}: {e}") from e
    finally:
        client.close()
    if not digest:
        raise ImageBuildError(f"pushing {target}: the engine reported no digest")
    log.info("pushed %s as %s@%s", local, target, digest)
    return digest


def push_target(registry: str, tag: str) -> str:
    """Where ``image build --push REGISTRY`` puts *tag*: ``REGISTRY/tag``, checked.

    *registry* is ``HOST[:PORT][/NAMESPACE]`` (``127.0.0.1:5000``,
    ``harbor.example.com/project``); a URL's scheme is dropped (the engine picks it).
    """
    bare = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    target = f"{bare}/{tag}"
    try:
        ref = parse_reference(target)
    except InvalidAPIParameters as e:
        raise ConfigError(f"--push {registry!r}: {e}") from None
    if not ref.host or ref.host != bare.partition("/")[0]:
        raise ConfigError(
            f"--push {registry!r}: expected a registry host such as 127.0.0.1:5000 or "
            "harbor.example.com/project"
        )
    return target
