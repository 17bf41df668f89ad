"""Path safety of folder paths: the pure parser, table-driven, then symlinks on disk."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

from backendai.errors import InvalidAPIParameters
from backendai.vfs.paths import relative_path, resolve_inside


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "."),
        (".", "."),
        ("a", "a"),
        ("a/b/c.txt", "a/b/c.txt"),
        ("a//b/./c", "a/b/c"),
        ("dir/", "dir"),
        ("..hidden", "..hidden"),
        ("a/..b", "a/..b"),
    ],
)
def test_accepted_paths(raw: str, expected: str) -> None:
    assert relative_path(raw) == PurePosixPath(expected)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/etc/passwd", "is absolute"),
        ("..", "climbs out with '..'"),
        ("../x", "climbs out with '..'"),
        ("a/../../x", "climbs out with '..'"),
        ("a/..", "climbs out with '..'"),
        ("a\x00b", "NUL byte"),
        ("x" * 256, "longer than 255"),
        ("a/" * 2100, "longer than 4096"),
    ],
)
def test_refused_paths(raw: str, message: str) -> None:
    with pytest.raises(InvalidAPIParameters, match=message):
        relative_path(raw)


def test_root_refused_where_a_file_is_expected() -> None:
    with pytest.raises(InvalidAPIParameters, match="names the folder itself"):
        relative_path("./", allow_root=False)


def test_symlinks_inside_are_followed_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("s")
    os.symlink("sub", root / "inner")
    os.symlink(str(tmp_path / "secret"), root / "outer")
    os.symlink("../..", root / "sub" / "up")
    assert resolve_inside(root, PurePosixPath("inner")) == (root / "sub").resolve()
    for bad in ("outer", "sub/up", "sub/up/secret"):
        with pytest.raises(InvalidAPIParameters, match="outside the folder through a symlink"):
            resolve_inside(root, PurePosixPath(bad))
    # The link itself (to delete or rename it) is inside even when its target is not.
    assert resolve_inside(root, PurePosixPath("outer"), follow_last=False).name == "outer"
    with pytest.raises(InvalidAPIParameters, match="outside the folder"):
        resolve_inside(root, PurePosixPath("sub/up/x"), follow_last=False)


def test_error_does_not_reveal_host_paths(tmp_path: Path) -> None:
    root = tmp_path / "folder"
    root.mkdir()
    os.symlink("/etc", root / "etc")
    with pytest.raises(InvalidAPIParameters) as info:
        resolve_inside(root, PurePosixPath("etc/passwd"))
    assert str(tmp_path) not in str(info.value)
    assert "/etc" not in str(info.value).replace("'etc/passwd'", "")
