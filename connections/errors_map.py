"""From an error answer (Dataverse or Entra ID) to a typed error with a hint on how to fix it.

Dataverse error bodies look like ``{"error": {"code": "0x80040217", "message": "..."}}``; the hex
code picks the hint, the HTTP status picks the class. Entra ID (msal) answers carry an AADSTS
number that picks a plain-words diagnosis.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from d365_components.errors import (
    AuthenticationError,
    ConcurrencyError,
    DataverseError,
    PermissionDeniedError,
    RecordNotFoundError,
    ThrottledError,
    TransientError,
)

__all__ = ["AAD_HINTS", "HINTS", "aad_error", "dataverse_error", "parse_retry_after", "request_id_of"]

#: Dataverse error code (lower-case hex) -> what the user can do about it.
HINTS: dict[str, str] = {
    "0x80040200": "A required column has no value; include it in the data.",
    "0x80040203": "A value is not valid for its column; check types and option-set values.",
    "0x80040217": "No row has that id or key; check the table and the id (it may have been deleted).",
    "0x80040220": (
        "The caller lacks a privilege. For an app registration, create an application user for its "
        "client id in the Power Platform admin center and give it a security role with this privilege."
    ),
    "0x80040231": "The user lacks a privilege for this operation; ask an admin to grant a security role.",
    "0x80040237": "A row with the same key already exists (or the rows are already associated).",
    "0x80040265": "A plug-in or custom business logic rejected the operation; read the message.",
    "0x80040333": "Duplicate detection found a matching row; change the data or send MSCRM.SuppressDuplicateDetection.",
    "0x80044331": "A value failed validation (for example text longer than the column allows).",
    "0x80044a02": "The attachment is larger than the org's maximum file size.",
    "0x80048405": "Access is denied; check the user's security roles and the row's owner/sharing.",
    "0x80048408": "The statecode/statuscode pair is not valid; send a statuscode that belongs to the state.",
    "0x8004e023": "Aggregates cover at most 50,000 rows; add a filter or use aggregatelimit.",
    "0x80060882": "The row changed since you read it (ETag mismatch); read it again and retry the update.",
    "0x80060888": "That query option or expansion is not supported here; simplify the query.",
    "0x8006088a": (
        "The path names a table, property or function that does not exist; names are case-sensitive "
        "and tables use their entity-set name (accounts, not Account)."
    ),
    "0x80060892": "A row with these alternate-key values already exists.",
    "0x80072321": "Service protection: combined execution time too high; send fewer or lighter concurrent requests.",
    "0x80072322": "Service protection: too many requests in 5 minutes; slow down and honour Retry-After.",
    "0x80072326": "Service protection: more than 52 concurrent requests; lower the concurrency.",
    "0x80090017": "Files stored in the database cannot be downloaded in chunks; download in one request.",
    "0x80040227": "Other rows depend on this one; remove the associations first.",
    "0x8004022e": "That column is read-only and cannot be written.",
    "0x8004023b": "The operation is not valid for this row in its current state.",
    "0x80040315": "The operation is not supported for this table or message.",
    "0x0": "The request is malformed: check column names (lower-case logical names) and the query syntax.",
}

_STATUS_HINTS: dict[int, str] = {
    400: "The request is not valid; check the column names, values and query syntax.",
    401: "The access token was refused; check the connection's scope (audience must be the org URL).",
    403: "The caller lacks a privilege; check the user's or application user's security roles.",
    404: "Not found: check the table's entity-set name and the row id.",
    405: "That HTTP method is not allowed on this resource.",
    412: "A precondition failed: the row changed (ETag) or already exists / does not exist.",
    413: "The request is too large; send fewer rows per request.",
    429: "Service protection limit hit; the client waits and retries automatically within its budget.",
}

#: AADSTS number -> plain-words diagnosis.
AAD_HINTS: dict[int, str] = {
    90002: "The tenant was not found: check tenantId (a GUID or a verified domain such as contoso.onmicrosoft.com) and the cloud.",
    900023: "The tenant id is not valid: use the directory (tenant) GUID or a verified domain.",
    7000215: "The client secret is wrong: copy the secret's Value (not its ID) from the app registration.",
    7000222: "The client secret has expired: create a new one in the app registration.",
    700016: "No application with this client id exists in the tenant: check clientId and tenantId.",
    500011: (
        "The scope's resource was not found in the tenant: the scope must be the org URL plus "
        "/.default (https://contoso.crm.dynamics.com/.default), and Dynamics must exist in the tenant."
    ),
    650057: "The app is not allowed to call Dynamics 365: add the 'Dynamics CRM user_impersonation' API permission.",
    70011: "The scope is not valid: use {org}/.default for client credentials, {org}/user_impersonation for users.",
    700027: "The certificate was refused: upload its public key to the app registration and check the thumbprint.",
    70008: "The authorization code or refresh token has expired: sign in again.",
    70000: "The grant is not valid: sign in again.",
    50126: "Invalid user name or password.",
    65001: "The user or an admin has not consented to the app's permissions.",
    54005: "The authorization code was already redeemed: start the sign-in again.",
    501481: "The code verifier does not match the code challenge (PKCE): start the sign-in again.",
    9002313: "The authorization request was malformed: start the sign-in again.",
}

_AADSTS = re.compile(r"AADSTS(\d+)")
_REQUEST_ID_HEADERS = ("x-ms-service-request-id", "REQ_ID", "request-id", "x-ms-request-id")


def request_id_of(headers: httpx.Headers | dict[str, str]) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in _REQUEST_ID_HEADERS:
        if lowered.get(name.lower()):
            return lowered[name.lower()].split(",")[0].strip()
    return None


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` seconds (an integer or a decimal); HTTP dates are rare here and ignored."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def _error_body(body: Any) -> tuple[str | None, str | None, dict[str, Any]]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        code = error.get("code")
        return (str(code) if code is not None else None), error.get("message"), error
    return None, None, {}


def dataverse_error(
    status: int,
    headers: httpx.Headers | dict[str, str],
    body: bytes | str | Any,
    *,
    method: str | None = None,
    url: str | None = None,
) -> DataverseError | TransientError:
    """The typed error for one error answer (a whole response or a ``$batch`` part)."""
    parsed: Any = body
    if isinstance(body, bytes | str):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
    code, message, extra = _error_body(parsed)
    if not message:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body or "")
        message = text.strip()[:300] or httpx.codes.get_reason_phrase(status) or "error"
    code = code.lower() if code else None
    hint = (HINTS.get(code) if code else None) or _STATUS_HINTS.get(status)
    inner = extra.get("@Microsoft.PowerApps.CDS.InnerError.Message")
    if inner and inner not in message:
        message = f"{message} ({inner})"
    request_id = request_id_of(headers)
    where = f"{method} {url}" if method and url else None
    kwargs: dict[str, Any] = dict(status=status, code=code or None, hint=hint, request_id=request_id, method=method, url=url)
    if status == 429:
        retry_after = parse_retry_after({k.lower(): v for k, v in headers.items()}.get("retry-after"))
        return ThrottledError(message, retry_after=retry_after, **kwargs)
    if status == 404:
        return RecordNotFoundError(message, **kwargs)
    if status == 412:
        return ConcurrencyError(message, **kwargs)
    if status in (401, 403):
        return PermissionDeniedError(message, **kwargs)
    if status in (502, 503, 504):
        return TransientError(f"Dataverse is unavailable ({status}{', ' + where if where else ''}): {message}")
    return DataverseError(message, **kwargs)


def aad_error(result: dict[str, Any] | None, *, context: str = "Sign-in failed") -> AuthenticationError:
    """An :class:`AuthenticationError` from msal's error result (``error``, ``error_description``...)."""
    result = result or {}
    description = str(result.get("error_description") or result.get("error") or "no token was returned")
    codes = result.get("error_codes") or []
    code = codes[0] if codes and isinstance(codes[0], int) else None
    if code is None:
        match = _AADSTS.search(description)
        code = int(match.group(1)) if match else None
    first_line = description.strip().splitlines()[0] if description.strip() else description
    hint = AAD_HINTS.get(code) if code is not None else None
    message = f"{context}: {hint} [{first_line}]" if hint else f"{context}: {first_line}"
    return AuthenticationError(message, aad_code=code)
