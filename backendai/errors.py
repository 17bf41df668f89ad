"""The one exception tree of backendai.

Every error we raise on purpose derives from :class:`BackendAIError`. Foreign
exceptions (docker-py, SQLAlchemy, coredis, httpx) are translated at the one
adapter module that calls the foreign library; nothing above an adapter sees
them.  A subclass exists only where some caller acts differently on it::

    BackendAIError
    ├── ConfigError                 bad config file, key, value or override  (exit 78)
    ├── UnavailableError            a dependency does not answer: DB, Redis, Docker (exit 69)
    │   └── BackendUnavailable      the compute backend (Docker engine) is down
    ├── DatabaseError               a query failed for a reason other than availability
    ├── BusError                    the event bus refused an operation
    ├── KernelError                 a compute backend could not do what was asked
    │   ├── ImageNotFound           the image is not present on the agent
    │   ├── ImagePullError          pulling an image failed (carries .reason: auth-failed, ...)
    │   └── KernelNotFound          no such kernel on this backend
    ├── RegistryError               a container registry failed a request (carries .reason)
    │   ├── RegistryUnreachable     it does not answer (refused, timed out, unknown host)
    │   ├── RegistryAuthFailed      it refused the credentials (401, 403)
    │   └── RegistryNotFound        no such repository, tag, manifest or project (404)
    ├── RPCError                    a manager→agent call failed (carries the HTTP status)
    ├── ImageBuildError             `backendai image build` failed
    └── APIError                    an error with an HTTP status and a problem+json slug
        ├── InvalidAPIParameters    400 invalid-api-params
        ├── AuthenticationFailed    401 auth-failed
        ├── PermissionDenied        403 forbidden
        ├── NotFound                404 ... (SessionNotFound, ImageNotFoundAPI, ...)
        │   ├── SessionNotFound     404 session-not-found
        │   ├── UnknownImage        404 image-not-found
        │   └── VFolderNotFound     404 vfolder-not-found
        ├── Conflict                409 ... (SessionAlreadyExists)
        ├── InsufficientResources   412 insufficient-resources (impossible request)
        ├── PayloadTooLarge         413 request-too-large
        │   └── QuotaExceeded       413 vfolder-quota-exceeded (a folder would grow past its quota)
        ├── TooManyRequests         429 too-many-requests
        ├── ServerError             500 internal-server-error
        └── ServiceUnavailable      503 service-unavailable (no app proxy, ...)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "BackendAIError",
    "BackendUnavailable",
    "BusError",
    "ConfigError",
    "Conflict",
    "DatabaseError",
    "ImageBuildError",
    "ImageNotFound",
    "ImagePullError",
    "InsufficientResources",
    "InvalidAPIParameters",
    "KernelError",
    "KernelNotFound",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QuotaExceeded",
    "RPCError",
    "RegistryAuthFailed",
    "RegistryError",
    "RegistryNotFound",
    "RegistryUnreachable",
    "ServerError",
    "ServiceUnavailable",
    "SessionNotFound",
    "TooManyRequests",
    "UnavailableError",
    "UnknownImage",
    "VFolderNotFound",
]


class BackendAIError(Exception):
    """Root of every error backendai raises on purpose."""


class ConfigError(BackendAIError):
    """The configuration is invalid; the message names file, section.key, value, expected."""


class UnavailableError(BackendAIError):
    """A dependency (database, Redis, Docker engine) does not answer."""


class BackendUnavailable(UnavailableError):
    """The compute backend of an agent cannot be reached."""


class DatabaseError(BackendAIError):
    """A database operation failed."""


class BusError(BackendAIError):
    """The event bus could not publish or deliver."""


class KernelError(BackendAIError):
    """A compute backend could not perform a kernel operation."""


class ImageNotFound(KernelError):
    """The requested image is not present where the kernel should run."""


class ImagePullError(KernelError):
    """Pulling an image failed; ``reason`` says why in one word a session can carry.

    Reasons: ``auth-failed``, ``not-found``, ``wrong-arch``, ``no-space``, ``timeout``,
    ``unreachable``, ``unsupported``, ``failed``.
    """

    def __init__(self, message: str, *, reason: str = "failed") -> None:
        super().__init__(message)
        self.reason = reason


class RegistryError(BackendAIError):
    """A container registry failed a request; the message names it and the request."""

    reason: ClassVar[str] = "failed"


class RegistryUnreachable(RegistryError):
    reason = "unreachable"


class RegistryAuthFailed(RegistryError):
    reason = "auth-failed"


class RegistryNotFound(RegistryError):
    reason = "not-found"


class KernelNotFound(KernelError):
    """The backend knows no kernel with this id."""


class RPCError(BackendAIError):
    """A manager-to-agent RPC call failed."""

    def __init__(
        self, message: str, *, status: int | None = None, detail: str = "", slug: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail or message
        self.slug = slug  # the agent's problem type (e.g. image-pull-auth-failed), if any


class ImageBuildError(BackendAIError):
    """Building a kernel image failed."""


class APIError(BackendAIError):
    """An error that the REST API reports as application/problem+json."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-server-error"
    title: ClassVar[str] = "Internal server error"


class InvalidAPIParameters(APIError):
    status = 400
    slug = "invalid-api-params"
    title = "Missing or invalid API parameters"


class AuthenticationFailed(APIError):
    status = 401
    slug = "auth-failed"
    title = "Credential/signature mismatch"


class PermissionDenied(APIError):
    status = 403
    slug = "forbidden"
    title = "Forbidden operation"


class NotFound(APIError):
    status = 404
    slug = "not-found"
    title = "No such resource"


class SessionNotFound(NotFound):
    slug = "session-not-found"
    title = "No such session"


class UnknownImage(NotFound):
    slug = "image-not-found"
    title = "Unknown image"


class VFolderNotFound(NotFound):
    slug = "vfolder-not-found"
    title = "No such virtual folder"


class Conflict(APIError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class InsufficientResources(APIError):
    status = 412
    slug = "insufficient-resources"
    title = "The request cannot be satisfied by any agent"


class PayloadTooLarge(APIError):
    status = 413
    slug = "request-too-large"
    title = "Request too large"


class QuotaExceeded(PayloadTooLarge):
    slug = "vfolder-quota-exceeded"
    title = "Virtual folder quota exceeded"


class TooManyRequests(APIError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"


class ServerError(APIError):
    status = 500
    slug = "internal-server-error"
    title = "Internal server error"


class ServiceUnavailable(APIError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"
