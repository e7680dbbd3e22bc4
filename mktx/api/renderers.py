from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework.renderers import JSONRenderer

from mktx.api.errors import ErrorCode, error_body


class EnvelopeJSONRenderer(JSONRenderer):
    """Wraps what a view returns in `{"success": true, "data": ...}`.

    Responses already in the envelope (pagination, the exception handler) carry `response.enveloped = True`.
    """

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        response = (renderer_context or {}).get("response")
        if response is not None and not getattr(response, "enveloped", False):
            if response.status_code >= 400:
                code = ErrorCode.INTERNAL_ERROR if response.status_code >= 500 else ErrorCode.VALIDATION_ERROR
                data = error_body(str(data) if data else "Request failed", code)
            else:
                data = {"success": True, "data": data}
        return super().render(data, accepted_media_type, renderer_context)
