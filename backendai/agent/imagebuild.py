"""Build the stock kernel image ``backendai/python:3.11`` from Debian, with no registry.

``debootstrap`` (minbase, bookworm) makes a root file system with python3; we
add the ``work`` user (uid/gid 1000, home /home/work), trim caches and docs,
tar it and ``docker import`` it with the ``ai.backend.*`` labels that make it
a kernel image.  A layer with Jupyter and a plain HTTP app follows
(:mod:`.imageapps`).  Blocking (minutes): callers run it in a worker thread.

An image carrying our ``ai.backend.builder-version`` is reused unless
``force``; bump ``BUILDER_VERSION`` whenever the recipe changes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from ..errors import BackendUnavailable, ImageBuildError
from .imageapps import add_apps_layer, apps_base, has_current_apps

__all__ = ["BUILDER_VERSION", "DEFAULT_MIRROR", "build_python_image", "default_mirror"]

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = ["python3", "ca-certificates", "procps"]
WORK_UID = 1000
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LABELS = {
    "ai.backend.kernelspec": "1",
    "ai.backend.features": "batch query uid-match",
    "ai.backend.base-distro": "debian12",
    "ai.backend.runtime-type": "python",
    "ai.backend.runtime-path": "/usr/bin/python3",
    "ai.backend.resource.min.cpu": "1",
    "ai.backend.resource.min.mem": "256m",
    "ai.backend.user-uid": str(WORK_UID),
    "ai.backend.service-ports": "",
    "ai.backend.builder-version": str(BUILDER_VERSION),
}
# Trimmed from the root file system: caches and documentation nobody reads in a kernel.
_TRIM = ["var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"]


def default_mirror() -> str:
    """The Debian mirror this host's apt uses, else ``DEFAULT_MIRROR``."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        m = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if m:
            return m.group(1)
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        m = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", legacy.read_text(), re.MULTILINE)
        if m:
            return m.group(1)
    return DEFAULT_MIRROR


def build_python_image(
    *,
    tag: str = "backendai/python:3.11",
    force: bool = False,
    mirror: str | None = None,
    docker_url: str = "",
    apps: bool = True,
) -> str:
    """Build (or reuse) the Python kernel image *tag*; returns its image id.

    With *apps*, the image also offers Jupyter and a plain HTTP app (:mod:`.imageapps`).
    """
    try:
        client = docker.DockerClient(base_url=docker_url) if docker_url else docker.from_env()
    except docker.errors.DockerException as e:
        raise BackendUnavailable(f"cannot reach the Docker engine to build {tag}: {e}") from e
    try:
        previous = _image_id(client, tag)
        if not force and previous is not None and _is_current(client, previous, tag):
            current = client.images.get(previous)
            if apps and not has_current_apps(current.labels or {}):
                base = apps_base(current)
                image_id = add_apps_layer(client, tag, base)
                if previous != base:  # an outdated apps layer; still used by a container: kept
                    with contextlib.suppress(docker.errors.APIError):
                        client.images.remove(previous)
                return image_id
            log.info("image %s (%s) is current; not rebuilding", tag, previous[:19])
            return previous
        with tempfile.TemporaryDirectory(prefix="backendai-image-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _debootstrap(rootfs, mirror or default_mirror())
            _add_work_user(rootfs)
            for rel in _TRIM:
                shutil.rmtree(rootfs / rel, ignore_errors=True)
            archive = Path(tmp) / "rootfs.tar"
            _write_tar(rootfs, archive)
            image_id = _import(client, archive, tag)
        if apps:
            image_id = add_apps_layer(client, tag, image_id)
        if previous not in (None, image_id):
            with contextlib.suppress(docker.errors.APIError):  # still used by a container: keep it
                client.images.remove(previous)
        return image_id
    except docker.errors.APIError as e:
        raise ImageBuildError(f"Docker failed while building {tag}: {e.explanation or e}") from e
    except (requests.exceptions.RequestException, docker.errors.DockerException) as e:
        raise BackendUnavailable(f"Docker engine failed while building {tag}: {e}") from e
    finally:
        client.close()


def _image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return str(client.images.get(tag).id)
    except docker.errors.ImageNotFound:
        return None


def _is_current(client: docker.DockerClient, image_id: str, tag: str) -> bool:
    version = (client.images.get(image_id).labels or {}).get("ai.backend.builder-version")
    if version != str(BUILDER_VERSION):
        log.info(
            "image %s has builder version %s, want %s: rebuilding", tag, version, BUILDER_VERSION
        )
        return False
    return True


def _debootstrap(rootfs: Path, mirror: str) -> None:
    exe = shutil.which("debootstrap")
    if exe is None:
        raise ImageBuildError(
            "debootstrap is not installed; install it (apt-get install debootstrap) and retry"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root; run `backendai image build` as root")
    cmd = [
        exe,
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
        mirror,
    ]
    log.info("running %s (takes a minute or so)", " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.decode("utf-8", "replace").splitlines()[-20:])
        raise ImageBuildError(
            f"debootstrap {SUITE} from {mirror} failed with exit code {proc.returncode}:\n{tail}"
        )


def _add_work_user(rootfs: Path) -> None:
    """Add user and group ``work`` (WORK_UID) by editing the account files directly."""
    for name, line in [
        ("passwd", f"work:x:{WORK_UID}:{WORK_UID}:backendai kernel user:/home/work:/bin/bash\n"),
        ("group", f"work:x:{WORK_UID}:\n"),
        ("shadow", "work:*:19000:0:99999:7:::\n"),
        ("gshadow", "work:*::\n"),
    ]:
        path = rootfs / "etc" / name
        if not path.exists():
            continue
        content = path.read_text()
        if any(entry.split(":")[0] == "work" for entry in content.splitlines()):
            continue
        path.write_text(content + ("" if content.endswith("\n") or not content else "\n") + line)
    home = rootfs / "home" / "work"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, WORK_UID, WORK_UID)
    home.chmod(0o755)


def _write_tar(rootfs: Path, archive: Path) -> None:
    def numeric(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        # Device nodes come from the container runtime, not the image.
        if info.name.startswith("./dev/") and (info.ischr() or info.isblk()):
            return None
        info.uname = info.gname = ""
        return info

    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".", filter=numeric)


def _import(client: docker.DockerClient, archive: Path, tag: str) -> str:
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    changes = [f'LABEL {key}="{value}"' for key, value in LABELS.items()]
    changes += [f"ENV PATH={PATH}", "ENV LANG=C.UTF-8", "WORKDIR /home/work", 'CMD ["python3"]']
    result = client.api.import_image_from_file(
        str(archive), repository=repository, tag=version, changes=changes
    )
    if "errorDetail" in str(result):
        raise ImageBuildError(f"docker import of {tag} failed: {result}")
    image = client.images.get(tag)
    log.info("imported %s as %s", tag, image.id)
    return str(image.id)
