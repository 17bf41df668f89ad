"""Paths clients name in a kernel: normalised under the work directory, escapes refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from backendai.agent.execution import ExecuteRequest, parse_execute
from backendai.errors import InvalidAPIParameters
from backendai.kernel.paths import PathError, normalize, prepare_parent, resolve

ROOT = "/home/work"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("a.txt", "a.txt"),
        ("dir/sub/a.txt", "dir/sub/a.txt"),
        ("./dir//a.txt", "dir/a.txt"),
        ("dir/../a.txt", "a.txt"),
        (".", "."),
        ("/home/work", "."),
        ("/home/work/", "."),
        ("/home/work/data/x.csv", "data/x.csv"),
        ("/home/work/data/../x.csv", "x.csv"),
        (".output/plot.png", ".output/plot.png"),
    ],
)
def test_normalize_keeps_paths_under_the_work_directory(given: str, expected: str) -> None:
    assert normalize(ROOT, given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("../etc/passwd", "leaves /home/work"),
        ("..", "leaves /home/work"),
        ("a/../../b", "leaves /home/work"),
        ("/etc/passwd", "is outside /home/work"),
        ("/home/workshop/a", "is outside /home/work"),
        ("/home/work/../x", "is outside /home/work"),
        ("", "expected a non-empty string"),
        (None, "expected a non-empty string"),
        (42, "expected a non-empty string"),
        ("a\x00b", "NUL character"),
    ],
)
def test_normalize_refuses_escapes_naming_the_path(given: object, message: str) -> None:
    with pytest.raises(PathError, match=message) as e:
        normalize(ROOT, given)
    if isinstance(given, str) and given:
        assert repr(given) in str(e.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("/srv/k1/work/a", "a"), ("/home/work/a", "a"), ("/srv/k1/work", "."), ("/home/work", ".")],
)
def test_home_work_names_the_work_directory_wherever_it_is(given: str, expected: str) -> None:
    assert normalize("/srv/k1/work", given) == expected
    with pytest.raises(PathError, match="is outside /srv/k1/work"):
        normalize("/srv/k1/work", "/srv/k1/other")


def test_resolve_refuses_a_symlink_that_leaves(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "inside").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (work / "out").symlink_to(tmp_path)
    (work / "in").symlink_to(work / "inside")
    assert resolve(str(work), "in/f") == str(work / "in/f")
    with pytest.raises(PathError, match="through a symbolic link"):
        resolve(str(work), "out/secret")
    with pytest.raises(PathError, match="through a symbolic link"):
        prepare_parent(str(work), str(work / "out/new/f"), "out/new/f")
    assert not (tmp_path / "new").exists()
    prepare_parent(str(work), str(work / "a/b/f"), "a/b/f")
    assert (work / "a/b").is_dir()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"mode": "query", "run_id": "r1", "code": "1"}, ExecuteRequest("query", "r1", "1", {})),
        (
            {"mode": "batch", "run_id": "r", "options": {"exec": "*"}, "flush": 0},
            ExecuteRequest("batch", "r", "", {"exec": "*"}, 0.0),
        ),
        (
            {"mode": "continue", "run_id": "r", "code": None},
            ExecuteRequest("continue", "r", "", {}),
        ),
        ({"mode": "input", "run_id": "r", "code": "yes"}, ExecuteRequest("input", "r", "yes", {})),
    ],
)
def test_parse_execute_accepts(body: dict[str, object], expected: ExecuteRequest) -> None:
    assert parse_execute(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be a JSON object, got list"),
        ({"mode": "complete", "run_id": "r"}, "mode: invalid value 'complete'"),
        ({"mode": "query"}, "run_id: invalid value None"),
        ({"mode": "query", "run_id": "x" * 65}, "1-64 printable characters"),
        ({"mode": "query", "run_id": "a\nb"}, "1-64 printable characters"),
        ({"mode": "query", "run_id": "r", "code": 5}, "code: invalid value of type int"),
        ({"mode": "query", "run_id": "r", "options": [1]}, "options: invalid value"),
        ({"mode": "query", "run_id": "r", "flush": -1}, "flush: invalid value -1"),
        ({"mode": "query", "run_id": "r", "flush": "2"}, "flush: invalid value '2'"),
        ({"mode": "query", "run_id": "r", "flush": 601}, "seconds from 0 to 600"),
    ],
)
def test_parse_execute_refuses(body: object, message: str) -> None:
    with pytest.raises(InvalidAPIParameters, match=message):
        parse_execute(body)
