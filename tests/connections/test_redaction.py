"""No secret, token or key appears in any log line, error message or repr."""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from d365_components.connections.oauth import (
    AuthCodeConnection,
    CertificateConnection,
    ClientCredentialsConnection,
)
from d365_components.connections.tokens import Token
from d365_components.errors import D365Error

WRONG_SECRET = "wrong-secret-value-0123456789"


def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


async def test_no_secret_in_logs_errors_or_reprs(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    secrets: list[str] = [emulator.client_secret, WRONG_SECRET]

    def keep(error: BaseException) -> None:
        texts.extend([str(error), repr(error)])
        if isinstance(error, D365Error):
            texts.append(str(error.to_dict()))

    # A working connection: its token, repr and its client's repr.
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    client = connection.open_client()
    await client.whoami()
    secrets.append(connection.tokens._current.value)
    texts += [repr(connection), repr(client), repr(connection.tokens), repr(connection.inputs), str(connection.inputs)]
    # A 401 round (refused token) logs the refresh.
    connection.tokens._current = Token("refused-token-abcdef", time.monotonic() + 60, time.monotonic() + 60)
    secrets.append("refused-token-abcdef")
    await client.whoami()
    secrets.append(connection.tokens._current.value)
    # A Dataverse error.
    with pytest.raises(D365Error) as caught:
        await client.get_json("NoSuchThing")
    keep(caught.value)
    await connection.aclose()

    # A wrong secret.
    bad = ClientCredentialsConnection(emulator.connection_inputs(clientSecret=WRONG_SECRET))
    with pytest.raises(D365Error) as caught:
        await bad.test()
    keep(caught.value)
    texts += [repr(bad), repr(bad.inputs)]
    await bad.aclose()

    # A certificate connection (the emulator has no certificate clients: sign-in fails).
    pem = _private_key_pem()
    secrets += [line for line in pem.splitlines() if not line.startswith("-----")][:3]
    cert = CertificateConnection(
        {k: v for k, v in emulator.connection_inputs(privateKey=pem, thumbprint="AB" * 20).items() if k != "clientSecret"}
    )
    with pytest.raises(D365Error) as caught:
        await cert.test()
    keep(caught.value)
    texts += [repr(cert), repr(cert.inputs)]
    await cert.aclose()

    # The auth-code flow: code, verifier, access and refresh tokens.
    inputs = emulator.connection_inputs()
    inputs.pop("clientSecret"), inputs.pop("tokenUrl")
    user = AuthCodeConnection(inputs)
    url, flow = await user.authorization_url("http://localhost:8400/callback")
    async with httpx.AsyncClient(verify=emulator.ssl_context, follow_redirects=False) as browser:
        location = (await browser.get(url)).headers["location"]
    callback = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    await user.exchange_code(flow, callback)
    with pytest.raises(D365Error) as caught:
        await user.exchange_code(flow, callback)  # a code is redeemed once
    keep(caught.value)
    secrets += [callback["code"], flow["code_verifier"], user.tokens._current.value]
    refresh_tokens = [rt["secret"] for rt in user.token_cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)]
    assert refresh_tokens
    secrets += refresh_tokens
    await user.open_client().whoami()
    await user.aclose()

    texts.append(caplog.text)
    texts += [r.getMessage() for r in caplog.records]
    everything = "\n".join(texts)
    leaked = [s[:8] + "…" for s in secrets if s and s in everything]
    assert not leaked, f"secrets leaked: {leaked}"
    assert "d365_components" in caplog.text  # the library did log at DEBUG


async def test_refreshing_tokens_does_not_grow_the_secret_registry(emulator):
    """A long-running host refreshes every connection's token each hour: JWTs are masked by their
    shape, so only opaque secrets (client secrets, refresh tokens) are remembered."""
    from d365_components import redaction

    connection = ClientCredentialsConnection(emulator.connection_inputs())
    await connection.open_client().whoami()
    before = len(redaction._secrets)
    tokens = []
    for _ in range(5):  # each a forced refresh, as after a 401
        tokens.append(await connection.tokens.token(stale=connection.tokens._current.value))
    await connection.aclose()
    assert len(set(tokens)) == 5
    assert len(redaction._secrets) == before
    assert all(redaction.redact(f"Authorization: {t}") == "Authorization: [REDACTED]" for t in tokens)
