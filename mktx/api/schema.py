"""OpenAPI: the envelope around every documented response, the shared error responses, and a Postman collection
generated from the same schema; both built once per process (they change only with the code)."""

from __future__ import annotations

import json
import threading
from typing import Any

from django.conf import settings
from django.utils import translation
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

ENVELOPE_ERRORS = {
    "400": "Validation failed (`VALIDATION_ERROR`, the field in `details.field`)",
    "401": "Missing, invalid or expired token (`UNAUTHORIZED`)",
    "403": "The caller's role does not allow this (`FORBIDDEN`)",
    "404": "Not found, or another merchant's (`RESOURCE_NOT_FOUND`)",
    "429": "Rate limit exceeded (`RATE_LIMIT_EXCEEDED`); see `Retry-After`",
}

_COMPONENTS = {
    "ErrorEnvelope": {
        "type": "object",
        "required": ["success", "error", "code", "details"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {"type": "string", "example": "Validation failed: templateId: Template not found"},
            "code": {
                "type": "string",
                "example": "VALIDATION_ERROR",
                "description": "VALIDATION_ERROR, UNAUTHORIZED, FORBIDDEN, RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE, "
                "RESOURCE_IN_USE, RATE_LIMIT_EXCEEDED, TWITTER_API_ERROR, AI_SERVICE_ERROR, METHOD_NOT_ALLOWED, "
                "SERVICE_UNAVAILABLE, INTERNAL_ERROR",
            },
            "details": {
                "type": "object",
                "additionalProperties": True,
                "example": {"field": "templateId", "reason": "Template not found"},
            },
        },
    },
    "Pagination": {
        "type": "object",
        "required": ["page", "limit", "total", "totalPages"],
        "properties": {
            "page": {"type": "integer", "example": 1},
            "limit": {"type": "integer", "example": 20},
            "total": {"type": "integer", "example": 100},
            "totalPages": {"type": "integer", "example": 5},
        },
    },
}

_HTTP_METHODS = ("get", "post", "put", "patch", "delete")

# Set (`extend_schema(extensions=...)`) on an operation whose responses are written out as they are sent, outside
# the envelope and the shared errors: X's side (webhooks_app/webhook_schema.py). The hook removes the marker.
RESPONSES_AS_SENT = "x-mktx-responses-as-sent"


def _is_public(operation: dict[str, Any]) -> bool:
    return not any(operation.get("security") or [])


def _is_envelope(schema: dict[str, Any] | None, components: dict[str, Any]) -> bool:
    if schema and "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1])
    return bool(schema) and "success" in (schema or {}).get("properties", {})


def _wrap(schema: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "data": schema if schema else {"nullable": True, "example": None},
        },
    }


def envelope_postprocessing_hook(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular hook: documents what the renderer and the exception handler really send."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.update(_COMPONENTS)
    error_ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _HTTP_METHODS or operation.pop(RESPONSES_AS_SENT, False):
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if not status.startswith("2"):
                    continue
                content = response.setdefault("content", {})
                body = content.setdefault("application/json", {})
                if not _is_envelope(body.get("schema"), components):
                    body["schema"] = _wrap(body.get("schema"))
            for status, description in ENVELOPE_ERRORS.items():
                if _is_public(operation) and status in ("401", "403"):
                    continue
                responses.setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": error_ref}}}
                )
    return result


# --- Postman ----------------------------------------------------------------------------------------------------------

_EXAMPLE_BY_FORMAT = {
    "uuid": "550e8400-e29b-41d4-a716-446655440000",
    "date-time": "2026-01-18T10:00:00Z",
    "date": "2026-01-18",
    "email": "user@example.com",
    "uri": "https://example.com/",
}


def example_for(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A plausible example value for a JSON schema, for request bodies in the Postman collection."""
    if depth > 8:
        return None
    if "$ref" in schema:
        return example_for(components.get(schema["$ref"].rsplit("/", 1)[-1], {}), components, depth + 1)
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    for combinator in ("allOf", "oneOf", "anyOf"):
        if schema.get(combinator):
            return example_for(schema[combinator][0], components, depth + 1)
    if schema.get("enum"):
        return next((value for value in schema["enum"] if value is not None), None)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {
            name: example_for(prop, components, depth + 1)
            for name, prop in schema.get("properties", {}).items()
            if not prop.get("readOnly")
        }
    if kind == "array":
        return [example_for(schema.get("items", {}), components, depth + 1)]
    if kind == "integer":
        return 0
    if kind == "number":
        return 0.0
    if kind == "boolean":
        return True
    if kind == "string":
        return _EXAMPLE_BY_FORMAT.get(schema.get("format", ""), "string")
    return None


def _parameter_example(parameter: dict[str, Any]) -> str:
    value = parameter.get("example", parameter.get("schema", {}).get("example"))
    return "" if value is None else str(value)


def postman_collection(schema: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A Postman v2.1 collection with one request per operation of the OpenAPI document, grouped by tag."""
    components = schema.get("components", {}).get("schemas", {})
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _HTTP_METHODS:
                continue
            segments = [seg for seg in path.strip("/").split("/") if seg]
            postman_segments = [f":{seg[1:-1]}" if seg.startswith("{") else seg for seg in segments]
            parameters = operation.get("parameters", [])
            url: dict[str, Any] = {
                "raw": "{{baseUrl}}/" + "/".join(postman_segments),
                "host": ["{{baseUrl}}"],
                "path": postman_segments,
                "variable": [
                    {"key": p["name"], "value": "", "description": p.get("description", "")}
                    for p in parameters
                    if p.get("in") == "path"
                ],
                "query": [
                    {
                        "key": p["name"],
                        "value": _parameter_example(p) if p.get("required") else "",
                        "disabled": not p.get("required"),
                        "description": p.get("description", ""),
                    }
                    for p in parameters
                    if p.get("in") == "query"
                ],
            }
            headers = [
                {"key": p["name"], "value": _parameter_example(p), "description": p.get("description", "")}
                for p in parameters
                if p.get("in") == "header"
            ]
            request: dict[str, Any] = {
                "method": method.upper(),
                "header": [{"key": "Accept", "value": "application/json"}, *headers],
                "url": url,
                "description": operation.get("description") or operation.get("summary") or "",
            }
            body_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body_schema:
                request["header"].append({"key": "Content-Type", "value": "application/json"})
                request["body"] = {
                    "mode": "raw",
                    "raw": json.dumps(example_for(body_schema, components), indent=2),
                    "options": {"raw": {"language": "json"}},
                }
            if _is_public(operation):
                request["auth"] = {"type": "noauth"}
            tag = (operation.get("tags") or ["api"])[0]
            name = operation.get("summary") or f"{method.upper()} /{'/'.join(segments)}"
            folders.setdefault(tag, []).append({"name": name, "request": request, "response": []})
    return {
        "info": {
            "name": schema.get("info", {}).get("title", "API"),
            "description": schema.get("info", {}).get("description", ""),
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{accessToken}}", "type": "string"}]},
        "variable": [{"key": "baseUrl", "value": base_url}, {"key": "accessToken", "value": ""}],
        "item": [{"name": tag, "item": items} for tag, items in sorted(folders.items())],
    }


# --- built once per process -------------------------------------------------------------------------------------------

# Generating the document walks every view and serializer (about a second): anonymous callers must not be able to
# make each worker do it on every request. It depends only on the code, the API version and the language, so it is
# generated without the request; the collection also depends on MKTX_PUBLIC_URL.
_built: dict[tuple[Any, ...], dict[str, Any]] = {}
_lock = threading.RLock()  # one build at a time (a second thread waits for it); the collection nests the schema


def _once(key: tuple[Any, ...], build: Any) -> dict[str, Any]:
    with _lock:
        if key not in _built:
            _built[key] = build()
        return _built[key]


def cached_schema(version: str | None = None) -> dict[str, Any]:
    """The public OpenAPI document (treat as read-only: it is shared)."""
    return _once(
        ("schema", version, translation.get_language()),
        lambda: SchemaGenerator(api_version=version).get_schema(request=None, public=True),
    )


def cached_postman_collection() -> dict[str, Any]:
    """The Postman collection, its `baseUrl` the public URL (never the caller's Host header)."""
    base_url = settings.MKTX_PUBLIC_URL
    return _once(
        ("postman", base_url, translation.get_language()),
        lambda: postman_collection(cached_schema(), base_url),
    )


def schema_cache_clear() -> None:
    with _lock:
        _built.clear()


class CachedSpectacularAPIView(SpectacularAPIView):
    """drf-spectacular's schema view, answering from `cached_schema` (JSON or YAML as negotiated)."""

    def _get_schema_response(self, request: Request) -> Response:
        version = self.api_version or request.version or self._get_version_parameter(request)
        filename = self._get_filename(request, version)
        return Response(data=cached_schema(version), headers={"Content-Disposition": f'inline; filename="{filename}"'})
