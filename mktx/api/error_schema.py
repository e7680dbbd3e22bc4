"""Documented error responses beyond the shared ones the envelope hook adds to every operation (mktx/api/schema.py):
an operation that answers a 401 though public, or a 409, says so with the same envelope."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR_ENVELOPE, description=description)


def x_errors() -> dict[int, OpenApiResponse]:
    """What an operation that calls X answers when X fails (mktx/xapi/errors.py `api_error_for`); X's rate limit
    is the shared 429."""
    return {
        502: error_response("X refused or failed the call (`TWITTER_API_ERROR`; X's status in `details.xStatus`)"),
        503: error_response("X could not be reached in time (`TWITTER_API_ERROR`)"),
    }
