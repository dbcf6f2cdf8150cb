"""How a delivery authenticates to its endpoint (a serviceendpoint's `authtype` and `authvalue`: WebhookKey, HttpHeader, HttpQueryString), the TLS check of webhook URLs, and keeping those secrets out of errors."""

from __future__ import annotations

import json
import ssl
from typing import Any
from urllib.parse import urlencode

from defusedxml import ElementTree

# serviceendpoint.authtype values
WEBHOOK_KEY, HTTP_HEADER, HTTP_QUERY_STRING = 4, 5, 6


def tls_verify(value: bool | str) -> ssl.SSLContext | bool:
    """httpx's `verify` from a setting: True/False, or the path of a CA bundle to trust."""
    return ssl.create_default_context(cafile=value) if isinstance(value, str) else value


def with_auth(url: str, authtype: int | None, authvalue: str | None, headers: dict[str, str]) -> str:
    if authtype == WEBHOOK_KEY and authvalue:
        return url + ("&" if "?" in url else "?") + urlencode({"code": authvalue})
    if authtype in (HTTP_HEADER, HTTP_QUERY_STRING) and authvalue:
        pairs = auth_settings(authvalue)
        if authtype == HTTP_HEADER:
            headers.update(pairs)
            return url
        return url + ("&" if "?" in url else "?") + urlencode(pairs)
    return url


def auth_settings(authvalue: str) -> dict[str, str]:
    """`<settings><setting name="x-api-key" value="..." /></settings>` (or a JSON object) -> pairs."""
    text = authvalue.strip()
    if text.startswith("{"):
        pairs = json.loads(text)
        return {str(k): str(v) for k, v in pairs.items()}
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        raise ValueError("the endpoint's authvalue is not <settings><setting name=... value=.../></settings>") from None
    return {s.get("name"): s.get("value", "") for s in root.iter("setting") if s.get("name")}


def without_secrets(text: str, step: dict[str, Any]) -> str:
    """`text` without the endpoint's key, header values or query-string values."""
    secret = step.get("authvalue")
    if not secret:
        return text
    secrets = [secret]
    try:
        secrets += [v for v in auth_settings(secret).values() if len(v) > 2]
    except ValueError:
        pass
    for value in secrets:
        text = text.replace(value, "***")
    return text
