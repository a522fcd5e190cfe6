"""Domain-level errors every service raises; one HTTP handler maps them to problem+json."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class RapportError(Exception):
    """Base of errors that map to a client-facing problem (RFC 9457)."""

    status: int = 400
    title: str = "Bad request"
    problem_type: str = "about:blank"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class Unauthenticated(RapportError):
    status = 401
    title = "Authentication required"


class Forbidden(RapportError):
    status = 403
    title = "Forbidden"


class NotFound(RapportError):
    status = 404
    title = "Not found"


class Conflict(RapportError):
    status = 409
    title = "Conflict"


class Gone(RapportError):
    status = 410
    title = "Gone"


class PreconditionFailed(RapportError):
    status = 412
    title = "Precondition failed"


class PayloadTooLarge(RapportError):
    status = 413
    title = "Payload too large"


class UnsupportedMediaType(RapportError):
    status = 415
    title = "Unsupported media type"


class InvalidInput(RapportError):
    status = 422
    title = "Invalid input"


def validation_errors(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's (or FastAPI's) error items as a problem's ``errors``: where, what, kind."""
    return [
        {
            "location": [str(part) for part in item.get("loc", ())],
            "message": item.get("msg", ""),
            "type": item.get("type", ""),
        }
        for item in items
    ]
