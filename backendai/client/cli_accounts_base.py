"""What the account admin commands share: a GraphQL call, and printing its answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .api import APIClient, APIResponseError
from .output import format_table, out

__all__ = ["gql", "mutated", "show", "table"]


async def gql(api: APIClient, query: str, **variables: Any) -> dict[str, Any]:
    """The ``data`` of a GraphQL answer; its first error raises :class:`APIResponseError`."""
    answer = (
        await api.request("POST", "/admin/gql", json={"query": query, "variables": variables})
    ).json()
    errors = answer.get("errors")
    if errors:
        raise APIResponseError(
            400, "graphql-error", "GraphQL error", errors[0].get("message", str(errors[0]))
        )
    data: dict[str, Any] = answer["data"]
    return data


def mutated(data: dict[str, Any], field: str) -> dict[str, Any]:
    result: dict[str, Any] = data[field]
    if not result.get("ok"):
        raise APIResponseError(400, "invalid-api-params", "Refused", result.get("msg") or field)
    return result


def table(
    items: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], as_json: bool
) -> int:
    if as_json:
        out(json.dumps(list(items), indent=2))
    elif not items:
        out("Nothing to list.")
    else:
        out(format_table([h for h, _ in columns], [[i.get(k) for _, k in columns] for i in items]))
    return 0


def show(item: dict[str, Any], as_json: bool) -> int:
    if as_json:
        out(json.dumps(item, indent=2))
    else:
        out(format_table(["FIELD", "VALUE"], list(item.items())))
    return 0
