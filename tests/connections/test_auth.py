"""OAuth connections against the emulator's identity provider, over HTTPS with msal unchanged."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import pytest

from d365_components.connections.oauth import AuthCodeConnection, ClientCredentialsConnection
from d365_components.connections.tokens import FileTokenCache, Token
from d365_components.emulator import defaults
from d365_components.errors import AuthenticationError, ConnectionConfigError, InputValidationError

REDIRECT = "http://localhost:8400/callback"


async def _connection(emulator, **overrides) -> ClientCredentialsConnection:
    return ClientCredentialsConnection(emulator.connection_inputs(**overrides))


def _user_inputs(emulator, **overrides):
    inputs = emulator.connection_inputs(**overrides)
    inputs.pop("clientSecret")
    inputs.pop("tokenUrl")
    return inputs


async def test_client_credentials_connection_test_says_who_we_are(emulator):
    connection = await _connection(emulator)
    try:
        result = await connection.test()
    finally:
        await connection.aclose()
    assert result["organizationId"] == defaults.ORGANIZATION_ID
    assert result["userId"] in (defaults.APP_USER_ID, defaults.APP_USER_OBJECT_ID)
    assert result["webApiUrl"] == emulator.api_url
    assert result["businessUnitId"] == defaults.BUSINESS_UNIT_ID
    assert result["organizationName"] == defaults.ORGANIZATION_NAME
    assert result["userName"]


async def test_open_client_returns_the_same_client(emulator):
    connection = await _connection(emulator)
    assert connection.open_client() is connection.open_client()
    await connection.aclose()
    reopened = connection.open_client()
    assert reopened.closed is False  # reopened after close, and sign-in still works
    # A refused token forces a token request through a new identity HTTP client.
    connection.tokens._current = Token("revoked-token-value", time.monotonic() + 3600, time.monotonic() + 3600)
    assert (await reopened.whoami())["OrganizationId"] == defaults.ORGANIZATION_ID
    await connection.aclose()


@pytest.mark.parametrize(
    ("overrides", "code", "words"),
    [
        ({"clientSecret": "not-the-right-secret-123"}, 7000215, "client secret is wrong"),
        ({"clientId": "00000000-0000-4000-8000-000000000bad"}, 700016, "client id"),
        ({"tenantId": "00000000-0000-4000-8000-00000000dead", "tokenUrl": None}, 90002, "tenant"),
        ({"scopes": "https://other.crm.dynamics.com/.default"}, 500011, "scope"),
    ],
)
async def test_sign_in_failures_are_diagnosed(emulator, overrides, code, words):
    connection = await _connection(emulator, **overrides)
    with pytest.raises(AuthenticationError) as caught:
        await connection.test()
    await connection.aclose()
    assert caught.value.aad_code == code
    assert words in str(caught.value).lower()
    assert "not-the-right-secret-123" not in str(caught.value) + repr(caught.value)


def test_non_dynamics_url_is_refused_naming_the_field(emulator):
    with pytest.raises(ConnectionConfigError, match="webApiUrl"):
        ClientCredentialsConnection(emulator.connection_inputs(allowCustomHost=False))
    with pytest.raises(ConnectionConfigError, match="webApiUrl"):
        ClientCredentialsConnection(
            emulator.connection_inputs(webApiUrl="https://contoso.example.com", allowCustomHost=False)
        )


def test_token_url_and_tenant_must_agree(emulator):
    with pytest.raises(ConnectionConfigError, match="tokenUrl"):
        ClientCredentialsConnection(emulator.connection_inputs(tenantId="contoso.onmicrosoft.com"))


def test_bad_inputs_name_every_field(emulator):
    with pytest.raises(InputValidationError) as caught:
        ClientCredentialsConnection(emulator.connection_inputs(clientId="nope", cloud="mars"))
    pointers = {e.pointer for e in caught.value.errors}
    assert {"/clientId", "/cloud"} <= pointers


async def test_untrusted_certificate_points_at_ca_bundle(emulator):
    connection = await _connection(emulator, caBundle=None)
    with pytest.raises(ConnectionConfigError, match="caBundle"):
        await connection.test()
    await connection.aclose()


async def test_unreachable_url_is_a_config_error(emulator):
    with socket_port() as port:
        # Sign-in works (the token is for the emulator's org); the Web API host does not answer.
        inputs = emulator.connection_inputs(webApiUrl=f"https://127.0.0.1:{port}", scopes=f"{emulator.org_url}/.default")
    connection = ClientCredentialsConnection(inputs)
    with pytest.raises(ConnectionConfigError, match="127.0.0.1"):
        await connection.test()
    await connection.aclose()


async def test_environment_ca_variables_do_not_override_ca_bundle(emulator, monkeypatch, tmp_path):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(bogus))
    connection = await _connection(emulator)
    try:
        assert (await connection.test())["organizationId"] == defaults.ORGANIZATION_ID
    finally:
        await connection.aclose()


async def test_cached_token_serves_many_calls_with_one_token_request(emulator):
    connection = await _connection(emulator)
    client = connection.open_client()
    before = emulator.identity.issued["client_credentials"]
    await asyncio.gather(*(client.whoami() for _ in range(40)))
    await asyncio.gather(*(client.whoami() for _ in range(40)))
    assert emulator.identity.issued["client_credentials"] - before == 1
    await connection.aclose()


async def test_a_401_refreshes_once_and_retries(emulator):
    connection = await _connection(emulator)
    client = connection.open_client()
    await client.whoami()
    before = emulator.identity.issued["client_credentials"]
    # The server stops accepting the token we hold (as after a key rollover): every request sees a 401.
    connection.tokens._current = Token("revoked-token-value", time.monotonic() + 3600, time.monotonic() + 3600)
    results = await asyncio.gather(*(client.whoami() for _ in range(20)))
    assert all(r["OrganizationId"] == defaults.ORGANIZATION_ID for r in results)
    assert emulator.identity.issued["client_credentials"] - before == 1
    await connection.aclose()


async def test_short_token_lifetime_refreshes_mid_run(fresh_emulator):
    emulator = fresh_emulator(token_lifetime=2, seed=None)
    connection = ClientCredentialsConnection(emulator.connection_inputs())
    client = connection.open_client()
    deadline = time.monotonic() + 4.5
    calls = 0
    while time.monotonic() < deadline:
        await asyncio.gather(*(client.whoami() for _ in range(5)))
        calls += 5
        await asyncio.sleep(0.05)
    issued = emulator.identity.issued["client_credentials"]
    assert 3 <= issued <= 7, issued  # one per second of token life (2 s minus the margin), never one per call
    assert calls > 50
    await connection.aclose()


async def test_auth_code_with_pkce_then_refresh(emulator, tmp_path):
    cache = FileTokenCache(tmp_path / "auth" / "tokens.json")
    connection = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id), token_cache=cache)
    url, flow = await connection.authorization_url(REDIRECT, state="state-123")
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["scope"][0].split()[0] == f"{emulator.org_url}/user_impersonation"
    assert "offline_access" in query["scope"][0]
    async with httpx.AsyncClient(verify=emulator.ssl_context, follow_redirects=False) as browser:
        answer = await browser.get(url)
    assert answer.status_code == 302
    callback = {k: v[0] for k, v in parse_qs(urlsplit(answer.headers["location"]).query).items()}
    assert callback["state"] == "state-123"
    who = await connection.exchange_code(flow, callback)
    assert who["userName"] == defaults.USER_EMAIL
    assert connection.signed_in
    client = connection.open_client()
    me = await client.whoami()
    assert me["UserId"] in (defaults.USER_ID, defaults.USER_OBJECT_ID)
    # The cache file holds the refresh token, readable by the owner only.
    mode = stat.S_IMODE(os.stat(cache.path).st_mode)
    assert mode == 0o600
    # A refused token makes ten concurrent calls share one refresh-token grant.
    before = emulator.identity.issued["refresh_token"]
    connection.tokens._current = Token("revoked-token-value", time.monotonic() + 3600, time.monotonic() + 3600)
    await asyncio.gather(*(client.whoami() for _ in range(10)))
    assert emulator.identity.issued["refresh_token"] - before == 1
    await connection.aclose()

    # A new process with the same cache file signs in silently.
    again = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id), token_cache=FileTokenCache(cache.path))
    assert again.signed_in
    assert (await again.open_client().whoami())["UserId"] == me["UserId"]
    await again.aclose()


async def test_auth_code_refreshes_before_expiry(fresh_emulator):
    emulator = fresh_emulator(token_lifetime=2, seed=None)
    connection = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id))
    url, flow = await connection.authorization_url(REDIRECT)
    async with httpx.AsyncClient(verify=emulator.ssl_context, follow_redirects=False) as browser:
        location = (await browser.get(url)).headers["location"]
    await connection.exchange_code(flow, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()})
    client = connection.open_client()
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        await asyncio.gather(*(client.whoami() for _ in range(3)))
        await asyncio.sleep(0.05)
    assert 1 <= emulator.identity.issued["refresh_token"] <= 4
    await connection.aclose()


async def test_auth_code_callback_error_is_explained(emulator):
    connection = AuthCodeConnection(_user_inputs(emulator))
    _, flow = await connection.authorization_url(REDIRECT)
    with pytest.raises(AuthenticationError, match="consent"):
        await connection.exchange_code(
            flow, {"error": "consent_required", "error_description": "AADSTS65001: The user has not consented."}
        )
    await connection.aclose()


class socket_port:
    """A loopback port that nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        return self.port

    def __exit__(self, *exc: object) -> None:
        pass


def test_a_corrupt_token_cache_file_starts_empty(tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text("{not json")
    cache = FileTokenCache(path)
    assert not any(cache.search(cache.CredentialType.REFRESH_TOKEN))


async def test_a_shared_token_cache_never_lends_one_users_sign_in_to_another(emulator):
    """A host may keep every user's sign-in in one cache: a connection acts only for its own account."""
    cache = msal.SerializableTokenCache()
    signed_in = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id), token_cache=cache)
    url, flow = await signed_in.authorization_url(REDIRECT)
    async with httpx.AsyncClient(verify=emulator.ssl_context, follow_redirects=False) as browser:
        location = (await browser.get(url)).headers["location"]
    who = await signed_in.exchange_code(flow, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()})
    mine = who["accountId"]
    assert mine and mine.startswith(defaults.USER_OBJECT_ID)
    await signed_in.aclose()

    # Another user's connection on the same cache, whose own sign-in is not (or no longer) there.
    other = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id), token_cache=cache,
                               account_id="00000000-0000-4000-8000-00000000beef." + emulator.tenant_id)
    with pytest.raises(AuthenticationError, match="sign"):
        await other.open_client().whoami()
    await other.aclose()

    # A second account in the cache: a connection that does not say which one is refused.
    state = json.loads(cache.serialize())
    [(key, account)] = state["Account"].items()
    state["Account"][key.replace(mine, "someone-else")] = {**account, "home_account_id": "someone-else",
                                                           "local_account_id": "someone-else"}
    cache.deserialize(json.dumps(state))
    unnamed = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id), token_cache=cache)
    with pytest.raises(AuthenticationError, match="several"):
        await unnamed.open_client().whoami()
    await unnamed.aclose()
    named = AuthCodeConnection(_user_inputs(emulator, tenantId=emulator.tenant_id), token_cache=cache, account_id=mine)
    assert (await named.open_client().whoami())["UserId"] in (defaults.USER_ID, defaults.USER_OBJECT_ID)
    await named.aclose()
