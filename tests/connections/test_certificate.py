"""The certificate connection: msal signs a client assertion with our key and sends it.

The emulator's token endpoint knows only client secrets, so it refuses the assertion; the test
captures the token request on the connection's own identity HTTP client and checks the signed
JWT (issuer, audience, thumbprint header) with the certificate's public key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from d365_components.connections.oauth import CertificateConnection
from d365_components.errors import AuthenticationError, ConnectionConfigError


def _certificate() -> tuple[str, str, rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d365-components test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode(), key, cert


def _inputs(emulator, **extra):
    inputs = {k: v for k, v in emulator.connection_inputs().items() if k != "clientSecret"}
    return {**inputs, **extra}


@pytest.mark.parametrize("form", ["certificate", "thumbprint"])
async def test_client_assertion_is_signed_with_the_certificate(emulator, form):
    key_pem, cert_pem, key, cert = _certificate()
    sha1 = cert.fingerprint(hashes.SHA1()).hex().upper()
    extra = {"certificate": cert_pem} if form == "certificate" else {"thumbprint": sha1}
    connection = CertificateConnection(_inputs(emulator, privateKey=key_pem, **extra))
    sent: list[dict[str, list[str]]] = []

    def capture(request: httpx.Request) -> None:
        if request.url.path.endswith("/token"):
            sent.append(parse_qs(request.content.decode()))

    connection.identity_http().event_hooks["request"].append(capture)
    try:
        await connection.test()
    except AuthenticationError:
        pass  # the emulator accepts secrets only
    finally:
        await connection.aclose()
    [form_data] = sent
    assert "client_secret" not in form_data
    assert form_data["client_assertion_type"] == ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]
    assertion = form_data["client_assertion"][0]
    claims = jwt.decode(
        assertion, key.public_key(), algorithms=["RS256", "PS256"], audience=emulator.token_url
    )
    assert claims["iss"] == claims["sub"] == emulator.client_id
    header = jwt.get_unverified_header(assertion)
    if form == "certificate":
        expected = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
        assert jwt.utils.base64url_decode(header["x5t#S256"]) == expected
    else:
        assert jwt.utils.base64url_decode(header["x5t"]).hex().upper() == sha1


def test_certificate_inputs_are_checked(emulator):
    key_pem, cert_pem, _, _ = _certificate()
    with pytest.raises(ConnectionConfigError, match="thumbprint"):
        CertificateConnection(_inputs(emulator, privateKey=key_pem))
    with pytest.raises(ConnectionConfigError, match="privateKey"):
        CertificateConnection(_inputs(emulator, privateKey="not a key", certificate=cert_pem))
