"""Every error the library raises, in one tree, so hosts can route them by type.

    D365Error                      base: a user-safe ``message`` and a ``disposition``
    ├── DefinitionError            a plugin registered a malformed definition (at registration)
    │   └── DuplicateKeyError      two definitions share one permanent key
    ├── UnknownKeyError            no action, trigger, connection or data source has that key
    ├── InputValidationError       inputs do not match the published schema; ``.errors`` lists
    │                              every field (JSON pointer + reason); no request was sent
    ├── ConnectionConfigError      connection inputs that cannot work (non-Dynamics URL, cloud
    │                              mismatch, unreadable CA bundle)
    ├── AuthenticationError        no token could be obtained (wrong tenant, secret, scope...);
    │                              ``.aad_code`` holds the AADSTS number when Entra ID sent one
    ├── DataverseError             Dataverse answered with an error: ``.status``, ``.code``
    │   │                          (hex, e.g. 0x80040217), ``.message``, ``.hint``, ``.request_id``
    │   ├── RecordNotFoundError    404
    │   ├── ConcurrencyError       412: the row changed (ETag) or exists/doesn't (upsert modes)
    │   ├── PermissionDeniedError  403, or 401 after a token refresh
    │   └── ThrottledError         429 service-protection limit; ``.retry_after`` seconds
    ├── TransientError             network failure, timeout or 5xx that outlived the retries
    └── WebhookRejected            a trigger refused an incoming request; ``.status`` is the
                                   HTTP status to answer with (400, 401, 413, 415)

``disposition`` tells a host what to do: ``"config"`` (the user must fix something),
``"transient"`` (retry later) or ``"system"`` (a bug or an unexpected answer).

Secrets never reach a message: every message passes through :func:`redact` when rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from d365_components.redaction import redact

__all__ = [
    "AuthenticationError",
    "ConcurrencyError",
    "ConnectionConfigError",
    "D365Error",
    "DataverseError",
    "DefinitionError",
    "DuplicateKeyError",
    "FieldError",
    "InputValidationError",
    "PermissionDeniedError",
    "RecordNotFoundError",
    "ThrottledError",
    "TransientError",
    "UnknownKeyError",
    "WebhookRejected",
]


class D365Error(Exception):
    """Base of every error raised by d365-components."""

    disposition: str = "system"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    @property
    def message(self) -> str:
        """The message, with secrets masked (hosts may show it as is)."""
        return redact(self._message)

    @message.setter
    def message(self, value: str) -> None:
        self._message = value

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON form for hosts and the CLI (already redacted)."""
        return {"type": type(self).__name__, "disposition": self.disposition, "message": str(self)}


class DefinitionError(D365Error):
    """A plugin registered something that cannot be published or run."""


class DuplicateKeyError(DefinitionError):
    """Two definitions claim the same permanent key."""


class UnknownKeyError(D365Error):
    """No registered definition has the requested key."""

    disposition = "config"


@dataclass(frozen=True)
class FieldError:
    """One invalid input: where (a JSON pointer such as ``/recordsPerPage``) and why."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class InputValidationError(D365Error):
    """Inputs failed validation; ``errors`` holds every failing field, not just the first."""

    disposition = "config"

    def __init__(self, errors: list[FieldError], *, subject: str = "inputs") -> None:
        self.errors = list(errors)
        self.subject = subject
        lines = "; ".join(str(e) for e in self.errors)
        super().__init__(f"Invalid {subject}: {lines}")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["errors"] = [{"pointer": e.pointer, "message": redact(e.message)} for e in self.errors]
        return data


class ConnectionConfigError(D365Error):
    """The connection's inputs can never work as given."""

    disposition = "config"


class AuthenticationError(D365Error):
    """The identity provider refused to issue a token."""

    disposition = "config"

    def __init__(self, message: str, *, aad_code: int | None = None) -> None:
        super().__init__(message)
        self.aad_code = aad_code


class DataverseError(D365Error):
    """Dataverse answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        hint: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.hint = hint
        self.request_id = request_id
        self.method = method
        self.url = url
        if 400 <= status < 500:
            self.disposition = "config"

    def __str__(self) -> str:
        parts = [f"Dataverse returned {self.status}"]
        if self.code:
            parts[0] += f" ({self.code})"
        parts.append(redact(self.message))
        if self.hint:
            parts.append(f"Hint: {redact(self.hint)}")
        if self.request_id:
            parts.append(f"Request id: {self.request_id}")
        return ". ".join(p.rstrip(".") for p in parts) + "."

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(
            status=self.status,
            code=self.code,
            dataverseMessage=redact(self.message),
            hint=redact(self.hint) if self.hint else None,
            requestId=self.request_id,
        )
        return data


class RecordNotFoundError(DataverseError):
    """The addressed row, table or property does not exist."""


class ConcurrencyError(DataverseError):
    """A precondition failed: the row's ETag changed, or an upsert mode could not be honoured."""


class PermissionDeniedError(DataverseError):
    """The caller lacks a privilege, or the app user is missing."""


class ThrottledError(DataverseError):
    """A service-protection limit was hit; wait ``retry_after`` seconds."""

    disposition = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.disposition = "transient"


class TransientError(D365Error):
    """The request may succeed if tried again later (network, timeout, 5xx)."""

    disposition = "transient"


class WebhookRejected(D365Error):
    """An incoming trigger request was refused; answer it with ``status``."""

    disposition = "config"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status
