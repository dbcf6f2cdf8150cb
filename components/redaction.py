"""Keeps secrets out of every message, log line and repr.

Connections register each secret they hold (client secret, tokens, webhook keys) with
:func:`register_secret`; :func:`redact` replaces them wherever text leaves the library. Bearer
tokens and JWT-shaped strings are masked even when nobody registered them.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["RedactingFilter", "get_logger", "redact", "register_secret"]

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 6
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_SECRET_PARAMS = re.compile(
    r"(?i)((?:client_secret|refresh_token|access_token|code|password|code_verifier)=)[^&\s\"']+"
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with every known secret, bearer token and JWT masked."""
    if not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the rendered message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_filter = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """A library logger whose records are redacted (filters do not inherit, so each gets one)."""
    log = logging.getLogger(name)
    if _filter not in log.filters:
        log.addFilter(_filter)
    return log
