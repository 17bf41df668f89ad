"""The apps layer of the stock kernel image: a real Jupyter (from PyPI) and a plain HTTP app.

On top of the debootstrapped base (:mod:`.imagebuild`), one container with no
network installs Jupyter Notebook into ``/opt/backendai/apps`` (a venv) from
wheels that the host downloaded with its own pip into a cache directory
(``$XDG_CACHE_HOME/backendai/wheels``): a rebuild downloads nothing new, and
the base stays as it was (its own builder version), so only this layer is
redone when ``APPS_VERSION`` changes.  The container is committed under the
same tag with the labels that declare the apps (:mod:`backendai.manager.app_services`).
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import docker
import docker.errors
from docker.models.images import Image
from docker.types import Mount

from ..errors import ImageBuildError

__all__ = [
    "APPS_LABELS",
    "APPS_VERSION",
    "add_apps_layer",
    "apps_base",
    "has_current_apps",
    "wheel_cache",
]

log = logging.getLogger(__name__)

APPS_VERSION = 2
# What pip installs (the notebook brings jupyter-server, ipykernel and their dependencies).
REQUIREMENTS = ["notebook>=7,<8"]
APPS_DIR = "/opt/backendai/apps"
WWW_DIR = "/opt/backendai/www"
JUPYTER = (
    f"{APPS_DIR}/bin/jupyter notebook --no-browser --ip=127.0.0.1 --port={{port}} "
    "--ServerApp.token= --ServerApp.password= --ServerApp.allow_remote_access=True "
    "--ServerApp.allow_origin=* --ServerApp.root_dir=/home/work"
)
HTTP_APP = f"/usr/bin/python3 -m http.server {{port}} --bind 127.0.0.1 --directory {WWW_DIR}"
APPS_LABELS = {
    "ai.backend.service-ports": "jupyter:http:8888,web:http:8080",
    "ai.backendai.service.jupyter": JUPYTER,
    "ai.backendai.service.web": HTTP_APP,
    # The plain HTTP app serves a static page, open to anyone; Jupyter is for the owner only.
    "ai.backendai.service-public": "web",
    "ai.backendai.apps-version": str(APPS_VERSION),
}
_INDEX = "<!doctype html><title>backendai</title><h1>backendai web app</h1>\n"


def wheel_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "backendai" / "wheels"


def has_current_apps(labels: dict[str, str]) -> bool:
    return labels.get("ai.backendai.apps-version") == str(APPS_VERSION)


def _download_wheels(cache: Path, python_version: str) -> None:
    """Wheels for the image's Python (binary only: nothing is compiled in the image)."""
    arch = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine())
    if arch is None:
        raise ImageBuildError(f"no Jupyter wheels for machine type {platform.machine()!r}")
    cache.mkdir(parents=True, exist_ok=True)
    major, minor = python_version.split(".")[:2]
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(cache),
        "--only-binary=:all:", "--python-version", f"{major}.{minor}", "--implementation", "cp",
        "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none",
        # pip does not widen a manylinux platform to older ones: name each glibc up to bookworm's.
        *(a for v in range(5, 37) for a in ("--platform", f"manylinux_2_{v}_{arch}")),
        "pip", *REQUIREMENTS,
    ]  # fmt: skip
    log.info("downloading the Jupyter wheels into %s (cached across builds)", cache)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.decode("utf-8", "replace").splitlines()[-15:])
        raise ImageBuildError(f"pip download of {REQUIREMENTS} failed ({proc.returncode}):\n{tail}")


def apps_base(image: Image) -> str:
    """The base image under *image*'s apps layer (*image* itself when it has none)."""
    labels = image.labels or {}
    if "ai.backendai.apps-version" not in labels:
        return str(image.id)
    return labels.get("ai.backendai.base-image") or str(image.attrs.get("Parent") or image.id)


def add_apps_layer(
    client: docker.DockerClient, tag: str, base: str, python_version: str = "3.11"
) -> str:
    """Install the apps on *base* (offline, from the wheel cache) and commit it as *tag*."""
    cache = wheel_cache()
    _download_wheels(cache, python_version)
    pips = sorted(cache.glob("pip-*.whl"))
    if not pips:
        raise ImageBuildError(f"no pip wheel in {cache} after the download")
    script = " && ".join(
        [
            "set -e",
            f"python3 -m venv --without-pip {APPS_DIR}",
            f"{APPS_DIR}/bin/python3 /wheels/{pips[-1].name}/pip install --quiet --no-index "
            f"--no-compile --find-links /wheels {' '.join(repr(r) for r in REQUIREMENTS)}",
            f"mkdir -p {WWW_DIR}",
            f"printf '%s' '{_INDEX}' > {WWW_DIR}/index.html",
            f"find {APPS_DIR} -name __pycache__ -prune -exec rm -rf {{}} +",
        ]
    )
    container = client.containers.run(
        base,
        ["/bin/sh", "-c", script],
        user="root",
        network_mode="none",
        # A mount, not a volume: a volume would be committed into the image's config.
        mounts=[Mount("/wheels", str(cache), type="bind", read_only=True)],
        detach=True,
    )
    try:
        result = container.wait(timeout=900)
        if result.get("StatusCode") != 0:
            logs = container.logs().decode("utf-8", "replace")[-3000:]
            raise ImageBuildError(f"installing Jupyter into {tag} failed ({result}):\n{logs}")
        repository, _, version = tag.rpartition(":")
        changes = [f'LABEL {k}="{v}"' for k, v in APPS_LABELS.items()]
        changes.append(f'LABEL ai.backendai.base-image="{base}"')
        changes += ['CMD ["python3"]']  # not the install script
        image = container.commit(repository=repository, tag=version, changes=changes)
        log.info("added the apps layer (Jupyter, web) to %s: %s", tag, image.id)
        return str(image.id)
    except docker.errors.APIError as e:
        raise ImageBuildError(
            f"Docker failed while adding apps to {tag}: {e.explanation or e}"
        ) from e
    finally:
        container.remove(force=True)
