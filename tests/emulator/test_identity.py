"""msal runs unchanged against the emulator's identity provider, and failures look like Entra ID's."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import msal
import pytest

from d365_components.emulator import defaults
from d365_components.emulator.identity.oauth import InvalidToken

REDIRECT_URI = "http://localhost:8400/callback"


@pytest.fixture
def http_client(emulator):
    with httpx.Client(verify=emulator.ssl_context) as client:
        yield client


def confidential(emulator, http_client, **overrides):
    options = {"client_credential": emulator.client_secret, "authority": emulator.authority}
    options.update(overrides)
    client_id = options.pop("client_id", emulator.client_id)
    return msal.ConfidentialClientApplication(
        client_id, instance_discovery=False, http_client=http_client, **options)


def public(emulator, http_client):
    return msal.PublicClientApplication(
        emulator.client_id, authority=emulator.authority, instance_discovery=False, http_client=http_client)


def sign_in(app, emulator, http_client, scopes):
    """The browser leg of the auth-code flow: the emulator consents and posts the code back (form_post)."""
    flow = app.initiate_auth_code_flow(scopes, redirect_uri=REDIRECT_URI, response_mode="form_post")
    response = http_client.get(flow["auth_uri"], follow_redirects=False)
    assert response.status_code == 200, response.text
    assert f'action="{REDIRECT_URI}"' in response.text
    reply = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', response.text))
    assert reply["state"] == flow["state"]
    return app.acquire_token_by_auth_code_flow(flow, reply)


def token_post(emulator, http_client, tenant=None, **form):
    url = emulator.token_url if tenant is None else emulator.token_url.replace(emulator.tenant_id, tenant)
    return http_client.post(url, data=form)


def aadsts(body):
    return body["error_codes"][0]


# -- client credentials -----------------------------------------------------------------------

def test_client_credentials_then_cache(emulator, http_client):
    app = confidential(emulator, http_client)
    scopes = [f"{emulator.org_url}/.default"]
    before = emulator.identity.issued["client_credentials"]
    first = app.acquire_token_for_client(scopes)
    assert "access_token" in first, first
    assert first["token_source"] == "identity_provider"
    second = app.acquire_token_for_client(scopes)
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]
    assert emulator.identity.issued["client_credentials"] == before + 1

    claims = emulator.identity.verify(f"Bearer {first['access_token']}")
    assert claims["aud"] == emulator.org_url
    assert claims["oid"] == defaults.APP_USER_OBJECT_ID
    assert claims["appid"] == emulator.client_id
    assert claims["tid"] == emulator.tenant_id
    assert claims["exp"] - claims["iat"] == 3600


def test_trailing_slash_resource_is_accepted(emulator, http_client):
    result = confidential(emulator, http_client).acquire_token_for_client([f"{emulator.org_url}//.default"])
    assert "access_token" in result, result


def test_access_token_is_an_rs256_jwt_signed_by_a_published_key(emulator, http_client):
    import jwt

    token = emulator.get_token()
    header = jwt.get_unverified_header(token)
    keys = http_client.get(f"{emulator.authority}/discovery/v2.0/keys").json()["keys"]
    key = next(k for k in keys if k["kid"] == header["kid"])
    claims = jwt.decode(token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=emulator.org_url)
    assert claims["iss"] == http_client.get(f"{emulator.authority}/v2.0/.well-known/openid-configuration").json()["issuer"]


# -- authorization code + PKCE, refresh -------------------------------------------------------

def test_public_client_auth_code_flow_with_pkce(emulator, http_client):
    app = public(emulator, http_client)
    result = sign_in(app, emulator, http_client, [f"{emulator.org_url}/user_impersonation"])
    assert "access_token" in result, result
    assert result["refresh_token"]
    assert result["id_token_claims"]["preferred_username"] == defaults.USER_EMAIL
    claims = emulator.identity.verify(f"Bearer {result['access_token']}")
    assert claims["oid"] == defaults.USER_OBJECT_ID
    assert claims["scp"] == "user_impersonation"
    [account] = app.get_accounts()
    assert account["username"] == defaults.USER_EMAIL


def test_confidential_client_auth_code_flow(emulator, http_client):
    app = confidential(emulator, http_client)
    result = sign_in(app, emulator, http_client, [f"{emulator.org_url}/.default"])
    assert "access_token" in result, result
    assert emulator.identity.verify(f"Bearer {result['access_token']}")["oid"] == defaults.USER_OBJECT_ID


def test_expired_token_is_refreshed_silently_and_refresh_tokens_rotate(fresh_emulator):
    emulator = fresh_emulator(seed=None, token_lifetime=2)
    with httpx.Client(verify=emulator.ssl_context) as http_client:
        app = public(emulator, http_client)
        scopes = [f"{emulator.org_url}/user_impersonation"]
        first = sign_in(app, emulator, http_client, scopes)
        assert first["expires_in"] == 2
        # msal treats a token this close to expiry as expired: the silent call uses the refresh token.
        second = app.acquire_token_silent(scopes, account=app.get_accounts()[0])
        assert second and second["token_source"] == "identity_provider", second
        assert second["access_token"] != first["access_token"]
        assert emulator.identity.issued["refresh_token"] == 1

        replay = app.acquire_token_by_refresh_token(first["refresh_token"], scopes)
        assert replay.get("error") == "invalid_grant" and aadsts(replay) == 70000


def test_no_refresh_token_without_offline_access(emulator, http_client):
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    code = authorize(emulator, http_client, scope=f"{emulator.org_url}/user_impersonation",
                     code_challenge=challenge, code_challenge_method="S256")
    body = redeem(emulator, http_client, code, code_verifier=verifier).json()
    assert "access_token" in body and "refresh_token" not in body and "id_token" not in body


def authorize(emulator, http_client, **params):
    query = {"client_id": emulator.client_id, "response_type": "code", "redirect_uri": REDIRECT_URI,
             "scope": f"{emulator.org_url}/user_impersonation offline_access", "state": "s1", **params}
    response = http_client.get(emulator.authorize_url, params=query, follow_redirects=False)
    assert response.status_code == 302, response.text
    reply = parse_qs(urlsplit(response.headers["location"]).query)
    assert reply["state"] == ["s1"]
    assert "code" in reply, reply
    return reply["code"][0]


def redeem(emulator, http_client, code, **form):
    return token_post(emulator, http_client, grant_type="authorization_code", client_id=emulator.client_id,
                      code=code, redirect_uri=REDIRECT_URI, **form)


def test_pkce_mismatch_is_rejected(emulator, http_client):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(b"right").digest()).decode().rstrip("=")
    code = authorize(emulator, http_client, code_challenge=challenge, code_challenge_method="S256")
    response = redeem(emulator, http_client, code, code_verifier="wrong")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant" and aadsts(response.json()) == 50148


def test_code_is_single_use_and_expires(fresh_emulator):
    emulator = fresh_emulator(seed=None)
    with httpx.Client(verify=emulator.ssl_context) as http_client:
        code = authorize(emulator, http_client)
        assert redeem(emulator, http_client, code).status_code == 200
        assert aadsts(redeem(emulator, http_client, code).json()) == 54005
        emulator.identity.code_lifetime = 0
        expired = redeem(emulator, http_client, authorize(emulator, http_client))
        assert expired.status_code == 400 and aadsts(expired.json()) == 70008


def test_authorize_reports_bad_scope_to_the_redirect_uri(emulator, http_client):
    query = {"client_id": emulator.client_id, "response_type": "code", "redirect_uri": REDIRECT_URI,
             "scope": "https://contoso.crm.dynamics.com/user_impersonation", "state": "s2"}
    response = http_client.get(emulator.authorize_url, params=query, follow_redirects=False)
    reply = parse_qs(urlsplit(response.headers["location"]).query)
    assert reply["error"] == ["invalid_resource"] and reply["state"] == ["s2"]
    assert reply["error_description"][0].startswith("AADSTS500011:")


# -- Entra-shaped failures ---------------------------------------------------------------------

def test_wrong_secret(emulator, http_client):
    result = confidential(emulator, http_client, client_credential="not-the-secret").acquire_token_for_client(
        [f"{emulator.org_url}/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert {"timestamp", "trace_id", "correlation_id"} <= result.keys()
    assert "not-the-secret" not in str(result)


def test_unknown_client(emulator, http_client):
    result = confidential(emulator, http_client, client_id="11111111-2222-3333-4444-555555555555") \
        .acquire_token_for_client([f"{emulator.org_url}/.default"])
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]


def test_wrong_scope(emulator, http_client):
    result = confidential(emulator, http_client).acquire_token_for_client(["https://contoso.crm.dynamics.com/.default"])
    assert result["error"] == "invalid_resource" and result["error_codes"] == [500011]
    not_default = token_post(emulator, http_client, grant_type="client_credentials", client_id=emulator.client_id,
                             client_secret=emulator.client_secret, scope=f"{emulator.org_url}/user_impersonation")
    assert aadsts(not_default.json()) == 1002012


def test_wrong_tenant(emulator, http_client):
    wrong = "99999999-9999-4999-8999-999999999999"
    response = token_post(emulator, http_client, tenant=wrong, grant_type="client_credentials",
                          client_id=emulator.client_id, client_secret=emulator.client_secret,
                          scope=f"{emulator.org_url}/.default")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant" and aadsts(response.json()) == 90002
    with pytest.raises(ValueError, match="tenant"):
        confidential(emulator, http_client, authority=f"{emulator.org_url}/{wrong}")


def test_client_secret_basic_and_missing_fields(emulator, http_client):
    ok = http_client.post(emulator.token_url, auth=(emulator.client_id, emulator.client_secret),
                          data={"grant_type": "client_credentials", "scope": f"{emulator.org_url}/.default"})
    assert ok.status_code == 200, ok.text
    missing = token_post(emulator, http_client, client_id=emulator.client_id)
    assert missing.json()["error"] == "invalid_request" and "'grant_type'" in missing.json()["error_description"]
    no_secret = token_post(emulator, http_client, grant_type="client_credentials", client_id=emulator.client_id,
                           scope=f"{emulator.org_url}/.default")
    assert no_secret.status_code == 401 and aadsts(no_secret.json()) == 7000218


# -- the Web API's side: verify -----------------------------------------------------------------

def forged(emulator, **claims):
    now = int(time.time())
    base = {"aud": emulator.org_url, "iss": emulator.identity.issuer, "iat": now, "nbf": now, "exp": now + 600,
            "oid": defaults.APP_USER_OBJECT_ID, "tid": emulator.tenant_id, "appid": emulator.client_id}
    return emulator.identity.sign({**base, **claims})


@pytest.mark.parametrize("case", ["missing", "not bearer", "malformed", "expired", "wrong audience", "foreign key"])
async def test_web_api_rejects_bad_tokens_with_401(api, emulator, case):
    now = int(time.time())
    headers = {
        "missing": {},
        "not bearer": {"Authorization": f"Basic {emulator.client_secret}"},
        "malformed": {"Authorization": "Bearer not.a.jwt"},
        "expired": {"Authorization": f"Bearer {forged(emulator, iat=now - 100, nbf=now - 100, exp=now - 10)}"},
        "wrong audience": {"Authorization": f"Bearer {forged(emulator, aud='https://contoso.crm.dynamics.com')}"},
        "foreign key": {"Authorization": "Bearer " + _foreign_token(emulator)},
    }[case]
    api.headers.pop("Authorization")
    response = await api.get("WhoAmI", headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f"Bearer authorization_uri={emulator.org_url}/{emulator.tenant_id}/oauth2/authorize")


def _foreign_token(emulator):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    return jwt.encode({"aud": emulator.org_url, "iss": emulator.identity.issuer, "iat": now, "exp": now + 60},
                      key, algorithm="RS256")


def test_verify_accepts_trailing_slash_audience_and_caches(emulator):
    token = forged(emulator, aud=emulator.org_url + "/")
    first = emulator.identity.verify(f"Bearer {token}")
    assert emulator.identity.verify(f"bearer {token}") is first


def test_cached_token_still_expires(emulator, monkeypatch):
    from d365_components.emulator.identity import provider as identity_module

    token = forged(emulator)
    claims = emulator.identity.verify(f"Bearer {token}")            # now cached
    later = type("Clock", (), {"time": staticmethod(lambda: claims["exp"] + 1)})
    monkeypatch.setattr(identity_module, "time", later)
    with pytest.raises(InvalidToken, match="expired"):
        emulator.identity.verify(f"Bearer {token}")


# -- certificate credentials ------------------------------------------------------------------

def _certificate():
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emulator test client")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), cert.fingerprint(hashes.SHA1()).hex()


class TextFormClient(httpx.Client):
    """msal hands the client assertion over as bytes; httpx would post it as "b'...'" (requests would not)."""

    def post(self, url, data=None, **kwargs):
        if isinstance(data, dict):
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return super().post(url, data=data, **kwargs)


@pytest.fixture
def form_client(emulator):
    with TextFormClient(verify=emulator.ssl_context) as client:
        yield client


@pytest.mark.parametrize("form", ["thumbprint (RS256, x5t)", "public certificate (PS256, x5t#S256)"])
def test_client_credentials_with_a_registered_certificate(emulator, form_client, form):
    key_pem, cert_pem, sha1 = _certificate()
    emulator.identity.add_certificate(emulator.client_id, cert_pem)
    credential = {"private_key": key_pem, "thumbprint": sha1} if form.startswith("thumbprint") else \
        {"private_key": key_pem, "public_certificate": cert_pem}
    result = confidential(emulator, form_client, client_credential=credential).acquire_token_for_client(
        [f"{emulator.org_url}/.default"])
    assert "access_token" in result, result
    assert emulator.identity.verify(f"Bearer {result['access_token']}")["oid"] == defaults.APP_USER_OBJECT_ID


def test_unregistered_certificate_is_refused(emulator, form_client):
    key_pem, _, sha1 = _certificate()
    result = confidential(emulator, form_client, client_credential={"private_key": key_pem, "thumbprint": sha1}) \
        .acquire_token_for_client([f"{emulator.org_url}/.default"])
    assert result["error"] == "invalid_client" and result["error_codes"] == [700027]


def test_device_code_flow(emulator, http_client):
    app = public(emulator, http_client)
    flow = app.initiate_device_flow([f"{emulator.org_url}/user_impersonation"])
    assert flow["user_code"] in flow["message"]
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert emulator.identity.verify(f"Bearer {result['access_token']}")["oid"] == defaults.USER_OBJECT_ID
    replay = token_post(emulator, http_client, grant_type="urn:ietf:params:oauth:grant-type:device_code",
                        client_id=emulator.client_id, device_code=flow["device_code"])
    assert replay.json()["error"] == "invalid_grant"
