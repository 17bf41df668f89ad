"""``POST /admin/gql``: the admin GraphQL API the official client's ``ps`` and ``admin`` use.

Body ``{query, variables}``; answer ``{data, errors?}`` with status 200, as
GraphQL over HTTP does (the client turns ``errors`` into its own exception).
A whole request runs on one database connection in one transaction, with
synchronous resolvers on the database's worker thread: graphql-core's async
executor gathers with asyncio, which does not run under Trio.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from graphql import graphql_sync
from quart import Response, g
from quart_trio import QuartTrio

from ..errors import InvalidAPIParameters
from .api import Caller, json_body, json_response
from .context import ManagerContext
from .gql_context import GqlContext
from .gql_mutations import MUTATIONS
from .gql_queries import QUERIES
from .gql_schema import SCHEMA

__all__ = ["add_gql_routes", "execute_gql"]

_ROOT = {**QUERIES, **MUTATIONS}


def execute_gql(
    conn: sa.Connection,
    caller: Caller,
    query: str,
    variables: dict[str, Any] | None,
    *,
    default_rate_limit: int = 0,
) -> dict[str, Any]:
    result = graphql_sync(
        SCHEMA,
        query,
        root_value=_ROOT,
        context_value=GqlContext(conn, caller, default_rate_limit),
        variable_values=variables,
    )
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        body["errors"] = [e.formatted for e in result.errors]
    return body


def add_gql_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/admin/gql", methods=["POST"])
    async def gql() -> Response:
        caller: Caller = g.caller
        body = await json_body()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise InvalidAPIParameters(
                'request body must be a JSON object {"query": "...", "variables": {...}}'
            )
        variables = body.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise InvalidAPIParameters(
                f"variables: invalid value {variables!r}; expected a JSON object or null"
            )
        query: str = body["query"]
        default = ctx.config.manager.default_rate_limit
        answer = await ctx.db.run(
            lambda c: execute_gql(c, caller, query, variables, default_rate_limit=default)
        )
        return json_response(answer)
