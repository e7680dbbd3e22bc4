"""OAuth 1.0a verification of the requests made to the sandbox, with oauthlib's server side."""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Callable
from typing import Any

from oauthlib.common import Request
from oauthlib.oauth1 import RequestValidator, ResourceEndpoint

_SAFE = set(string.ascii_letters + string.digits + "-_")


class _Validator(RequestValidator):
    """Knows the app's consumer key/secret and asks the sandbox for user tokens."""

    def __init__(self, consumer_key: str, consumer_secret: str, token_secret: Callable[[str], str | None]) -> None:
        super().__init__()
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.token_secret = token_secret
        self._nonces: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    # permissive shapes: X's tokens are `<user_id>-<random>`
    safe_characters = _SAFE
    client_key_length = (1, 128)
    access_token_length = (1, 128)
    nonce_length = (8, 128)
    enforce_ssl = False
    dummy_client = "dummy-client-key"
    dummy_access_token = "0-dummy-access-token"  # noqa: S105 - oauthlib needs a placeholder

    def validate_client_key(self, client_key: str, request: Request) -> bool:
        return client_key == self.consumer_key

    def get_client_secret(self, client_key: str, request: Request) -> str:
        return self.consumer_secret if client_key == self.consumer_key else "dummy-secret"

    def validate_access_token(self, client_key: str, token: str, request: Request) -> bool:
        return self.token_secret(token) is not None

    def get_access_token_secret(self, client_key: str, token: str, request: Request) -> str:
        return self.token_secret(token) or "dummy-token-secret"

    def validate_timestamp_and_nonce(
        self,
        client_key: str,
        timestamp: Any,
        nonce: str,
        request: Request,
        request_token: str | None = None,
        access_token: str | None = None,
    ) -> bool:
        key = (client_key, timestamp, nonce)
        now = time.time()
        with self._lock:
            if len(self._nonces) > 50_000:
                self._nonces = {k: t for k, t in self._nonces.items() if now - t < 900}
            if key in self._nonces:
                return False
            self._nonces[key] = now
        return True

    def validate_realms(self, *args: Any, **kwargs: Any) -> bool:
        return True


class OAuthVerifier:
    def __init__(self, consumer_key: str, consumer_secret: str, token_secret: Callable[[str], str | None]) -> None:
        self.endpoint = ResourceEndpoint(_Validator(consumer_key, consumer_secret, token_secret))

    def verify(self, uri: str, method: str, body: str, headers: dict[str, str]) -> str | None:
        """The access token of a correctly signed user-context request, else None."""
        valid, request = self.endpoint.validate_protected_resource_request(uri, method, body, headers)
        if not valid or request is None:
            return None
        return str(request.resource_owner_key)
