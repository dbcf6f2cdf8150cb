"""Secrets never leave the library: messages, log lines, tracebacks and reprs are masked."""

from __future__ import annotations

import logging

from d365_components.definitions import WebhookRequest
from d365_components.errors import D365Error, DataverseError
from d365_components.redaction import forget_secret, get_logger, redact, register_secret

SECRET = "s3cr3t-value-for-redaction-tests"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4eXoifQ.c2lnbmF0dXJlLXBhcnQ"


def test_registered_secrets_jwts_bearers_and_params_are_masked() -> None:
    register_secret(SECRET)
    text = f"secret={SECRET} token {JWT} Authorization: Bearer abcdefgh12345678 client_secret=hunter22&x=1"
    cleaned = redact(text)
    assert SECRET not in cleaned and JWT not in cleaned and "abcdefgh12345678" not in cleaned
    assert "hunter22" not in cleaned and cleaned.endswith("&x=1")
    forget_secret(SECRET)
    assert redact(SECRET) == SECRET


def test_errors_mask_secrets_in_message_str_and_repr() -> None:
    register_secret(SECRET)
    try:
        error = DataverseError(f"bad {SECRET}", status=400, code="0x0", hint=f"see {SECRET}")
        for text in (error.message, str(error), repr(error), str(error.to_dict())):
            assert SECRET not in text
        assert SECRET not in D365Error(f"x {SECRET}").message
    finally:
        forget_secret(SECRET)


def test_tracebacks_in_logs_are_masked(caplog) -> None:
    register_secret(SECRET)
    log = get_logger("d365_components.tests.redaction")
    try:
        with caplog.at_level(logging.DEBUG, logger="d365_components.tests.redaction"):
            try:
                raise ValueError(f"failed with {SECRET}")
            except ValueError:
                log.exception("request failed")
        assert "failed with" in caplog.text and SECRET not in caplog.text
    finally:
        forget_secret(SECRET)


def test_webhook_request_repr_hides_the_key() -> None:
    request = WebhookRequest("POST", {"Authorization": "Bearer abc", "x": "1"}, {"code": "the-webhook-key"}, b"{}")
    text = repr(request)
    assert "the-webhook-key" not in text and "Bearer abc" not in text and "'x': '1'" in text
