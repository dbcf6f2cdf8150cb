"""Keeps secrets out of every message, log line, traceback and repr.

Connections register each secret they hold (client secret, refresh tokens, webhook keys) with
:func:`register_secret` and may :func:`forget_secret` it when closed; :func:`redact` replaces them
wherever text leaves the library. Bearer tokens, JWT-shaped strings and secret query/form
parameters are masked even when nobody registered them.
"""

from __future__ import annotations

import logging
import re
import threading
from enum import Enum

__all__ = ["Redaction", "RedactingFilter", "forget_secret", "get_logger", "redact", "register_secret"]

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 6
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_SECRET_PARAMS = re.compile(
    r"(?i)((?<![A-Za-z0-9_])(?:client_secret|refresh_token|access_token|code|password|code_verifier)=)[^&\s\"']+"
)



class Redaction(str, Enum):
    """What a connection masks in messages besides secrets (which are always masked)."""

    #: secrets only
    secrets = "secrets"
    #: secrets and the environment's host
    org = "org"
    #: secrets, the host and every GUID
    identifiers = "identifiers"


_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None  # one alternation of every secret, longest first


def _rebuild() -> None:
    global _pattern
    ordered = sorted(_secrets, key=len, reverse=True)
    _pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None


def register_secret(value: str | None) -> None:
    """Remember a secret so that :func:`redact` masks it from now on."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        with _lock:
            if value not in _secrets:
                _secrets.add(value)
                _rebuild()


def forget_secret(value: str | None) -> None:
    """Stop tracking a secret that no longer exists (a rotated refresh token, a closed connection)."""
    with _lock:
        if value in _secrets:
            _secrets.discard(value)
            _rebuild()


def redact(text: str) -> str:
    """Return ``text`` with every known secret, bearer token and JWT masked."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _SECRET_PARAMS.sub(lambda m: m.group(1) + MASK, text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the rendered message and any traceback of every record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_filter = RedactingFilter()


def get_logger(name: str) -> logging.Logger:
    """A library logger whose records are redacted (filters do not inherit, so each gets one)."""
    log = logging.getLogger(name)
    if _filter not in log.filters:
        log.addFilter(_filter)
    return log
