"""Documented error responses beyond the shared ones the envelope hook adds to every operation (mktx/api/schema.py):
an operation that answers a 401 though public, or a 409, says so with the same envelope."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse

ERROR_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ERROR_ENVELOPE, description=description)
