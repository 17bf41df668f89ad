"""The OpenAPI 3 document of the manager's REST API, served at ``GET /openapi.json``.

Built from one table of routes below; ``tests/test_openapi.py`` checks that it
names exactly the routes the app registers, and fuzzes the API against it.
Every operation but the public ones needs the Backend.AI HMAC signature
(``Authorization``, ``Date``, ``X-BackendAI-Version``; see the API reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import __version__

__all__ = ["ROUTES", "Route", "openapi_document"]

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /session/{ref}
    summary: str
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    body: dict[str, Any] | None = None
    public: bool = False
    # Answers that are not a JSON document (a stream, a websocket, a file).
    streaming: bool = False
    multipart: bool = False


_OWNER = ("owner_access_key", _STR)
_SESSION_BODY = _obj(
    image=_STR,
    sessionName=_STR,
    name=_STR,
    clientSessionToken=_STR,
    type={"type": "string", "enum": ["interactive", "batch"]},
    group=_STR,
    domain=_STR,
    clusterSize=_INT,
    clusterMode={"type": "string", "enum": ["single-node", "multi-node"]},
    config=_obj(resources=_OBJ, environ=_OBJ, scalingGroup=_STR, resource_opts=_OBJ),
    tag=_STR,
    enqueueOnly=_BOOL,
    maxWaitSeconds={"type": "number"},
    reuseIfExists=_BOOL,
    startupCommand=_STR,
    dependencies={"type": "array", "items": _STR},
    startsAt=_STR,
    priority=_INT,
    preemptible=_BOOL,
)
_EXEC_BODY = _obj(
    mode={"type": "string", "enum": ["query", "batch", "input", "continue", "complete"]},
    runId=_STR,
    code=_STR,
    options=_OBJ,
)
_STRS = {"type": "array", "items": _STR}
_PERM = {"type": "string", "enum": ["ro", "rw", "wd"]}
_DELETE_FILES = _obj(files=_STRS, recursive=_BOOL)
_GROUP_BODY = _obj(
    name=_STR,
    description=_STR,
    isActive=_BOOL,
    sequencer=_STR,
    agentSelector=_STR,
    options=_OBJ,
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", "API and manager version", public=True),
    Route("GET", "/openapi.json", "This document", public=True),
    Route(
        "POST",
        "/auth/authorize",
        "Log in with email and password; answers the user's keypair",
        body=_obj(type=_STR, domain=_STR, username=_STR, password=_STR),
        public=True,
    ),
    Route("GET", "/auth/role", "The caller's global, domain and project roles", (("group", _STR),)),
    Route(
        "POST",
        "/auth/update-password",
        "Change the caller's password",
        body=_obj(old_password=_STR, new_password=_STR, new_password2=_STR),
    ),
    Route("POST", "/session", "Create (enqueue) a session", (_OWNER,), _SESSION_BODY),
    Route("POST", "/session/_/create", "Create a session (legacy path)", (_OWNER,), _SESSION_BODY),
    Route(
        "GET",
        "/session",
        "List sessions",
        (("status", _STR), ("limit", _INT), ("offset", _INT), ("all", _STR), _OWNER),
    ),
    Route("GET", "/session/{ref}", "Session information", (_OWNER,)),
    Route("DELETE", "/session/{ref}", "Cancel or terminate a session", (("forced", _STR), _OWNER)),
    Route("POST", "/session/{ref}", "Execute code", (_OWNER,), _EXEC_BODY),
    Route("PATCH", "/session/{ref}", "Restart the session's kernels", (_OWNER,)),
    Route("POST", "/session/{ref}/interrupt", "Interrupt running code", (_OWNER,)),
    Route(
        "POST",
        "/session/{ref}/complete",
        "Code completion",
        (_OWNER,),
        _obj(code=_STR, options=_OBJ),
    ),
    Route("GET", "/session/{ref}/logs", "Container output", (_OWNER,)),
    Route("GET", "/session/{ref}/status-history", "Status history", (_OWNER,)),
    Route("POST", "/session/{ref}/upload", "Upload files (multipart)", (_OWNER,), multipart=True),
    Route("GET", "/session/{ref}/files", "List files", (("path", _STR), _OWNER)),
    Route(
        "GET",
        "/session/{ref}/download_single",
        "Download one file",
        (("file", _STR), _OWNER),
        streaming=True,
    ),
    Route(
        "GET",
        "/session/{ref}/download",
        "Download files (tar)",
        (("files", _STR), _OWNER),
        streaming=True,
    ),
    Route(
        "POST",
        "/session/{ref}/download",
        "Download files (tar)",
        (_OWNER,),
        _obj(files={"type": "array", "items": _STR}),
        streaming=True,
    ),
    Route(
        "GET",
        "/events/session",
        "Session lifecycle events (server-sent events)",
        (("sessionName", _STR), ("sessionId", _STR), ("ownerAccessKey", _STR), ("scope", _STR)),
        streaming=True,
    ),
    Route("GET", "/stream/session/{ref}/execute", "Execute code (websocket)", streaming=True),
    Route("GET", "/stream/session/{ref}/pty", "Terminal (websocket)", streaming=True),
    Route("POST", "/admin/gql", "Admin GraphQL", body=_obj(query=_STR, variables=_OBJ)),
    Route("GET", "/resource/agents", "Agents (superadmin)", (("status", _STR),)),
    Route("GET", "/resource/agents/{agent_id}", "One agent with its topology (superadmin)"),
    Route("GET", "/admin/resource-groups", "Resource groups (superadmin)"),
    Route("POST", "/admin/resource-groups", "Create a resource group", body=_GROUP_BODY),
    Route("GET", "/admin/resource-groups/{name}", "One resource group"),
    Route("PATCH", "/admin/resource-groups/{name}", "Change a resource group", body=_GROUP_BODY),
    Route("GET", "/admin/registries", "Container registries (superadmin)"),
    Route(
        "POST",
        "/admin/registries",
        "Register a container registry",
        body=_obj(name=_STR, url=_STR, type=_STR, project=_STR, username=_STR, password=_STR),
    ),
    Route("DELETE", "/admin/registries/{name}", "Forget a registry"),
    Route("POST", "/admin/registries/{name}/rescan", "Rescan one registry"),
    Route("POST", "/admin/images/rescan", "Rescan every registry"),
    Route("GET", "/admin/images", "Known images", (("registry", _STR), ("architecture", _STR))),
    Route("DELETE", "/admin/images", "Forget an image", (("name", _STR), ("architecture", _STR))),
    Route("POST", "/admin/images/alias", "Alias an image", body=_obj(alias=_STR, target=_STR)),
    Route("DELETE", "/admin/images/alias/{alias}", "Remove an alias"),
    # Virtual folders (the bytes go through the storage proxy, with the tokens these hand out).
    Route(
        "POST",
        "/folders",
        "Create a folder (a project folder with 'group')",
        body=_obj(
            name=_STR,
            host=_STR,
            usage_mode=_STR,
            permission=_PERM,
            group=_STR,
            quota=_STR,
            cloneable=_BOOL,
        ),
    ),
    Route("GET", "/folders", "Folders the caller may see", (("all", _STR),)),
    Route("DELETE", "/folders", "Delete a folder by id", body=_obj(id=_STR)),
    Route("GET", "/folders/_/hosts", "Storage volumes the caller may use"),
    Route("GET", "/folders/{ref}", "One folder"),
    Route("DELETE", "/folders/{ref}", "Delete a folder"),
    Route("POST", "/folders/{ref}/rename", "Rename a folder", body=_obj(new_name=_STR)),
    Route("GET", "/folders/{ref}/files", "List a directory of a folder", (("path", _STR),)),
    Route(
        "POST",
        "/folders/{ref}/mkdir",
        "Make directories",
        body=_obj(path=_STR, parents=_BOOL, exist_ok=_BOOL),
    ),
    Route(
        "POST",
        "/folders/{ref}/request-upload",
        "A token for a resumable (tus) upload to the storage proxy",
        body=_obj(path=_STR, size=_INT),
    ),
    Route(
        "POST",
        "/folders/{ref}/request-download",
        "A token for a download (a directory as a zip with 'archive')",
        body=_obj(path=_STR, archive=_BOOL),
    ),
    Route(
        "POST",
        "/folders/{ref}/rename-file",
        "Rename a file",
        body=_obj(target_path=_STR, new_name=_STR),
    ),
    Route("POST", "/folders/{ref}/move-file", "Move a file", body=_obj(src=_STR, dst=_STR)),
    Route("POST", "/folders/{ref}/delete-files", "Delete files", body=_DELETE_FILES),
    Route("DELETE", "/folders/{ref}/delete-files", "Delete files", body=_DELETE_FILES),
    Route(
        "POST",
        "/folders/{ref}/clone",
        "Clone a folder",
        body=_obj(
            target_name=_STR,
            target_host=_STR,
            usage_mode=_STR,
            permission=_PERM,
            cloneable=_BOOL,
        ),
    ),
    Route(
        "POST",
        "/folders/{ref}/invite",
        "Invite users to a folder",
        body=_obj(perm=_PERM, emails=_STRS, user_ids=_STRS),
    ),
    Route("GET", "/folders/invitations/list", "Invitations waiting for the caller"),
    Route("POST", "/folders/invitations/accept", "Accept an invitation", body=_obj(inv_id=_STR)),
    Route("DELETE", "/folders/invitations/delete", "Decline an invitation", body=_obj(inv_id=_STR)),
    Route(
        "POST",
        "/folders/{ref}/share",
        "Share a folder with users",
        body=_obj(permission=_PERM, emails=_STRS),
    ),
    Route("DELETE", "/folders/{ref}/unshare", "Stop sharing a folder", body=_obj(emails=_STRS)),
    Route("GET", "/folders/_/quota", "A folder's quota and usage", (("id", _STR),)),
    Route(
        "POST",
        "/folders/_/quota",
        "Set a folder's quota",
        body=_obj(id=_STR, input=_obj(size_bytes=_INT)),
    ),
    # Apps in sessions and the app proxies.
    Route(
        "POST",
        "/session/{ref}/start-service",
        "Start an app in the session and route it through an app proxy",
        (_OWNER,),
        _obj(app=_STR, port=_INT, allowed_client_ips=_STRS),
    ),
    Route("GET", "/stream/session/{ref}/apps", "The session's apps", (_OWNER,)),
    Route(
        "GET", "/stream/session/{ref}/tcpproxy", "TCP tunnel to an app (websocket)", streaming=True
    ),
    Route(
        "GET",
        "/stream/session/{ref}/httpproxy",
        "HTTP tunnel to an app (websocket)",
        streaming=True,
    ),
    Route(
        "POST",
        "/appproxy/announce",
        "An app proxy announces itself (cluster secret, not a keypair)",
        body=_obj(id=_STR, api_url=_STR, mode=_STR),
    ),
)

_PROBLEM = {
    "description": "An error (application/problem+json)",
    "content": {
        "application/problem+json": {
            "schema": _obj(type=_STR, title=_STR, msg=_STR),
        }
    },
}


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name[1:-1], "in": "path", "required": True, "schema": _STR}
        for name in route.path.split("/")
        if name.startswith("{")
    ]
    params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in route.query]
    ok_type = "application/octet-stream" if route.streaming else "application/json"
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()} {route.path}",
        "parameters": params,
        "responses": {
            "2XX": {"description": "Success", "content": {ok_type: {"schema": {}}}},
            "4XX": _PROBLEM,
            "5XX": _PROBLEM,
        },
    }
    if route.public:
        op["security"] = []
    if route.body is not None:
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": route.body}},
        }
    elif route.multipart:
        op["requestBody"] = {
            "required": False,
            "content": {
                "multipart/form-data": {"schema": _obj(src={"type": "string", "format": "binary"})}
            },
        }
    return op


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "backendai manager REST API (Backend.AI v7.20230615 dialect)",
            "version": __version__,
        },
        "components": {
            "securitySchemes": {
                "BackendAIHMAC": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "BackendAI signMethod=HMAC-SHA256, credential=<access key>:<signature>; "
                    "with Date and X-BackendAI-Version headers",
                }
            }
        },
        "security": [{"BackendAIHMAC": []}],
        "paths": paths,
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
