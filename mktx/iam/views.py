from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mktx.api.error_schema import error_response
from mktx.api.errors import Unauthorized
from mktx.api.throttling import LoginRateThrottle
from mktx.iam.login_guard import login_attempt_begin, login_attempt_succeeded
from mktx.iam.models import User
from mktx.iam.serializers import LoginInput, RefreshInput, TokenPairOutput
from mktx.iam.tokens import tokens_for_user, tokens_refresh

TAGS = ["auth"]


def auth_responses(refused: str) -> dict[int, Any]:
    # Public operations get no 401 from the envelope hook (mktx/api/schema.py), but these two answer one.
    return {200: TokenPairOutput, 401: error_response(f"{refused} (`UNAUTHORIZED`)")}


class _PublicAuthView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginRateThrottle]


class LoginView(_PublicAuthView):
    @extend_schema(
        request=LoginInput, responses=auth_responses("Wrong email or password"), tags=TAGS, summary="Log in", auth=[]
    )
    def post(self, request: Request) -> Response:
        data = LoginInput(data=request.data)
        data.is_valid(raise_exception=True)
        email = data.validated_data["email"]
        wait = login_attempt_begin(email)
        if wait is not None:  # refused before the password is checked: see login_guard
            raise Throttled(wait=wait)
        user = authenticate(request, email=email, password=data.validated_data["password"])
        if not isinstance(user, User) or user.merchant_id is None or not user.merchant.is_active:  # type: ignore[union-attr]
            raise Unauthorized("Invalid email or password")  # counted as a failure by login_attempt_begin
        login_attempt_succeeded(email)
        User.objects.filter(pk=user.pk).update(last_login=timezone.now())
        return Response(tokens_for_user(user))


class RefreshView(_PublicAuthView):
    @extend_schema(
        request=RefreshInput,
        responses=auth_responses("Invalid, expired or already used refresh token"),
        tags=TAGS,
        summary="Refresh tokens",
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(tokens_refresh(data.validated_data["refresh_token"]))
