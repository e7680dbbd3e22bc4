"""The OpenAPI description of X's side of the API (the CRC challenge and the signed deliveries).

The views are plain Django views (webhooks_app/views.py: X signs its requests and reads exact answers, so no DRF
parsing, JWT, negotiation, throttle or renderer stands in between), and drf-spectacular documents only DRF views. The
classes here are what it reads instead: never routed, their methods only carry the schema; `views.documented_by`
hangs each on its plain view. The responses are written out as the views send them (the CRC answer is not in the
envelope), and the envelope hook leaves them as they are (`RESPONSES_AS_SENT`, mktx/api/schema.py).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mktx.api.error_schema import error_response
from mktx.api.schema import RESPONSES_AS_SENT
from webhooks_app.signatures import CRC_TOKEN

TAGS = ["webhooks"]
SIGNATURE_HEADER = "x-twitter-webhooks-signature"

_CRC_PARAMETERS = [
    OpenApiParameter(
        "crc_token",
        {"type": "string", "pattern": f"^{CRC_TOKEN.pattern}$", "example": "aBcDeFgHiJkLmNoPqRsT"},
        OpenApiParameter.QUERY,
        required=True,
        description="The challenge X sends; only token-shaped values are signed (else the endpoint would sign "
        "anything, an oracle for forging deliveries)",
    ),
    OpenApiParameter("nonce", str, OpenApiParameter.QUERY, description="Sent by X along with the token; unused"),
]

_NOT_CONFIGURED = error_response("Webhooks are not configured: `X_CONSUMER_SECRET` is unset (`SERVICE_UNAVAILABLE`)")

_CRC_RESPONSES: dict[int, Any] = {
    200: OpenApiResponse(
        response={
            "type": "object",
            "required": ["response_token"],
            "properties": {
                "response_token": {
                    "type": "string",
                    "pattern": "^sha256=[A-Za-z0-9+/]{43}=$",
                    "example": "sha256=TWtAhKAO2cgdHbJT9035P1TC2TagTdRS3zhVymPRaLc=",  # key "test", the token above
                    "description": '"sha256=" + base64(HMAC-SHA256(key: the consumer secret, message: crc_token))',
                }
            },
        },
        description="The challenge answered, as X reads it: a bare object, not in the `{success, data}` envelope",
    ),
    400: error_response("`crc_token` is missing or not token-shaped (`VALIDATION_ERROR`, `details.field`: crc_token)"),
    503: _NOT_CONFIGURED,
}

_USER = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "screen_name": {"type": "string"},
        "profile_image_url_https": {"type": "string"},
    },
}

_EVENTS = {"type": "array", "items": {"type": "object", "additionalProperties": True}}

# X's Account Activity delivery (x-platform-notes.md "Webhooks"). Any JSON object is stored; one this service does
# not know is kept as an event of unknown kind.
_DELIVERY = {
    "type": "object",
    "additionalProperties": True,
    "properties": {
        "for_user_id": {"type": "string", "description": "The subscribed X user this copy is for"},
        "direct_message_events": _EVENTS,
        "direct_message_mark_read_events": _EVENTS,
        "direct_message_indicate_typing_events": _EVENTS,
        "follow_events": _EVENTS,
        "users": {"type": "object", "additionalProperties": _USER, "description": "X user id to user"},
        "apps": {"type": "object", "additionalProperties": True},
        "user_event": {"type": "object", "additionalProperties": True, "description": "`revoke`: the app lost access"},
    },
    "example": {
        "for_user_id": "123456789",
        "direct_message_events": [
            {
                "type": "message_create",
                "id": "1642000000000000001",
                "created_timestamp": "1642000000000",
                "message_create": {
                    "sender_id": "987654321",
                    "target": {"recipient_id": "123456789"},
                    "message_data": {"text": "Hello!", "entities": {}},
                },
            }
        ],
        "users": {"987654321": {"id": "987654321", "screen_name": "customer_john", "name": "John Doe"}},
    },
}

_RECEIVED = {
    "type": "object",
    "required": ["success", "data"],
    "properties": {
        "success": {"type": "boolean", "enum": [True]},
        "data": {
            "type": "object",
            "required": ["received"],
            "properties": {
                "received": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "How many events the delivery held (each stored once, duplicates dropped)",
                }
            },
        },
    },
}

_DELIVERY_RESPONSES: dict[int, Any] = {
    200: OpenApiResponse(response=_RECEIVED, description="Stored; the events are processed after the answer"),
    400: error_response(
        "The body is not an X webhook payload (not JSON, not an object, nested too deep...) or `Content-Length` is "
        "not a whole number (`VALIDATION_ERROR`)"
    ),
    401: error_response(f"`{SIGNATURE_HEADER}` is missing or does not sign the body (`UNAUTHORIZED`)"),
    413: error_response("The body is over `MKTX_WEBHOOK_MAX_BYTES` (`VALIDATION_ERROR`, `details.field`: body)"),
    503: _NOT_CONFIGURED,
}

_SIGNATURE = OpenApiParameter(
    SIGNATURE_HEADER,
    {"type": "string", "example": "sha256=<base64 HMAC-SHA256 of the raw body>"},
    OpenApiParameter.HEADER,
    required=True,
    description='"sha256=" + base64(HMAC-SHA256(key: the consumer secret, message: the raw body))',
)


class XSignedSchema(AutoSchema):
    """Operations that X calls: no JWT (`security: []`); X's own signature is the check."""

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        if operation is not None:
            operation["security"] = []
        return operation


class XSideSchema(APIView):
    """The schema of a view X calls; never routed (its plain view answers)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    schema = XSignedSchema()

    def _documentation_only(self) -> Response:
        raise NotImplementedError("served by the plain view in webhooks_app/views.py")


def _crc_schema(operation_id: str, summary: str, description: str) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=description,
        parameters=_CRC_PARAMETERS,
        request=None,
        responses=_CRC_RESPONSES,
        tags=TAGS,
        extensions={RESPONSES_AS_SENT: True},
    )


class CrcVerifySchema(XSideSchema):
    @_crc_schema("webhooks_verify_crc", "Answer X's CRC challenge", "Where the API reference documents it.")
    def get(self, request: Request) -> Response:
        return self._documentation_only()


class TwitterWebhookSchema(XSideSchema):
    @_crc_schema(
        "webhooks_twitter_crc",
        "Answer X's CRC challenge on the webhook URL",
        "Where X sends it: `GET` on the URL registered as the webhook.",
    )
    def get(self, request: Request) -> Response:
        return self._documentation_only()

    @extend_schema(
        operation_id="webhooks_twitter_receive",
        summary="Receive X webhook events",
        description="X's Account Activity deliveries, signed with the consumer secret over the raw body. Each event "
        "is stored first (deduplicated) and processed after the answer.",
        parameters=[_SIGNATURE],
        request={"application/json": _DELIVERY},
        responses=_DELIVERY_RESPONSES,
        tags=TAGS,
        extensions={RESPONSES_AS_SENT: True},
    )
    def post(self, request: Request) -> Response:
        return self._documentation_only()
