"""The OAuth 2.0 / OpenID pieces the identity provider is made of: errors in Entra's shape, what a
code or refresh token stands for, client credentials from a request, PKCE, redirects to the client."""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
DELEGATED_PERMISSIONS = frozenset({"user_impersonation", ".default"})
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
TENANT_ALIASES = frozenset({"organizations", "common"})


class InvalidToken(Exception):
    """The bearer token cannot be accepted; `error` and `description` follow RFC 6750."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class OAuthError(Exception):
    """An Entra ID error: rendered as `{"error", "error_description": "AADSTS…", "error_codes"…}`."""

    def __init__(self, error: str, code: int, message: str, status: int = 400):
        super().__init__(f"AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Grant:
    """What an authorization code or a refresh token stands for."""

    client_id: str
    scopes: tuple[str, ...]
    expires_at: float
    redirect_uri: str = ""
    code_challenge: str | None = None
    code_challenge_method: str = "plain"
    nonce: str | None = None


def required_param(params: Any, name: str) -> str:
    value = params.get(name)
    if not value:
        raise OAuthError("invalid_request", 900144,
                         f"The request body must contain the following parameter: '{name}'.")
    text: str = value
    return text


def client_credentials(request: Request, form: dict[str, Any]) -> tuple[str, str | None]:
    """client_id and secret from the form (client_secret_post) or HTTP Basic (client_secret_basic)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", 7000216, "Malformed HTTP Basic client authentication.",
                             status=401) from None
        return client_id, secret
    return required_param(form, "client_id"), form.get("client_secret")


def pkce_matches(grant: Grant, verifier: str | None) -> bool:
    if not verifier:
        return False
    if grant.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    else:
        expected = verifier
    return secrets.compare_digest(expected.encode(), (grant.code_challenge or "").encode())


def redirect(redirect_uri: str, mode: str, reply: dict[str, str], state: str | None) -> Response:
    if state is not None:
        reply = {**reply, "state": state}
    if mode == "form_post":
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}"/>' for k, v in reply.items())
        return HTMLResponse(
            f'<html><body onload="document.forms[0].submit()"><form method="POST" '
            f'action="{html.escape(redirect_uri)}">{fields}</form></body></html>')
    separator = "#" if mode == "fragment" else ("&" if urlsplit(redirect_uri).query else "?")
    return RedirectResponse(f"{redirect_uri}{separator}{urlencode(reply)}", status_code=302)
