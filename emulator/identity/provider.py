"""The emulator's identity provider: just enough Microsoft Entra ID for msal to run unchanged.

It serves OpenID discovery, the authorize and token endpoints (client credentials, authorization
code with PKCE, device code, rotating refresh tokens; clients authenticate with a secret or a
certificate-signed assertion) and the JWKS, and signs RS256 access tokens whose audience is the
org URL. Failures answer in Entra's shape (`AADSTS…` codes) so that client error handling can be
tested offline. `verify` is what the Web API calls on every request, so it caches.
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from d365_components.emulator import defaults
from d365_components.emulator.identity.oauth import (
    DELEGATED_PERMISSIONS,
    DEVICE_CODE_GRANT,
    JWT_BEARER,
    OIDC_SCOPES,
    TENANT_ALIASES,
    Grant,
    InvalidToken,
    OAuthError,
    client_credentials,
    pkce_matches,
    redirect,
    required_param,
)


class IdentityProvider:
    """A local Entra ID tenant with one confidential client per entry of `clients` (id -> secret)."""

    def __init__(
        self,
        *,
        base_url: str,
        tenant_id: str,
        org_url: str,
        clients: dict[str, str],
        token_lifetime: int = 3600,
    ):
        self.base_url = base_url.rstrip("/")
        self.tenant_id = tenant_id
        self.org_url = org_url.rstrip("/")
        self.clients = dict(clients)
        self.token_lifetime = token_lifetime
        self.code_lifetime = 600
        self.refresh_token_lifetime = 24 * 3600
        self.issuer = f"{self.base_url}/{tenant_id}/v2.0"
        self.issued: collections.Counter[str] = collections.Counter()
        self.issued_to: collections.Counter[str] = collections.Counter()   # tokens per client id
        self.app_user_oids: dict[str, str] = {}   # client id -> its app user's object id (identity/app_users)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._key.public_key()
        self._kid = uuid.uuid4().hex
        self._codes: dict[str, Grant] = {}
        self._redeemed: set[str] = set()
        self._refresh_tokens: dict[str, Grant] = {}
        self._device_codes: dict[str, Grant] = {}
        self._verified: dict[str, dict[str, Any]] = {}
        self._certificates: dict[str, tuple[str, Any]] = {}   # x5t or x5t#S256 -> (client id, public key)

    def add_certificate(self, client_id: str, certificate_pem: str | bytes) -> None:
        """Register a certificate on a client, so it can authenticate with a signed client assertion."""
        if client_id not in self.clients:
            raise ValueError(f"unknown client id {client_id!r}")
        data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        certificate = x509.load_pem_x509_certificate(data)
        for algorithm in (hashes.SHA1(), hashes.SHA256()):
            thumbprint = base64.urlsafe_b64encode(certificate.fingerprint(algorithm)).decode().rstrip("=")
            self._certificates[thumbprint] = (client_id, certificate.public_key())

    def __repr__(self) -> str:
        return f"IdentityProvider(issuer={self.issuer!r}, clients={list(self.clients)!r})"

    # -- endpoints ---------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self._discovery, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/authorize", self._authorize, methods=["GET"]),
            Route("/{tenant}/oauth2/v2.0/token", self._token, methods=["POST"]),
            Route("/{tenant}/oauth2/v2.0/devicecode", self._device_code, methods=["POST"]),
            Route("/{tenant}/discovery/v2.0/keys", self._keys, methods=["GET"]),
        ]

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/authorize"

    async def _discovery(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
        except OAuthError as exc:
            return self._error_response(exc, request)
        base = f"{self.base_url}/{self.tenant_id}"
        return JSONResponse({
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "code_challenge_methods_supported": ["S256", "plain"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "oid", "tid", "name",
                                 "preferred_username", "nonce"],
            "tenant_region_scope": "EU",
        })

    async def _keys(self, request: Request) -> Response:
        jwk = RSAAlgorithm.to_jwk(self._public_key, as_dict=True)
        return JSONResponse({"keys": [{**jwk, "kid": self._kid, "use": "sig", "alg": "RS256"}]})

    async def _authorize(self, request: Request) -> Response:
        """Sign the interactive user in without a page and send the code back to the client."""
        params = request.query_params
        try:
            self._check_tenant(request.path_params["tenant"])
            client_id = required_param(params, "client_id")
            self._check_client(client_id)
            redirect_uri = required_param(params, "redirect_uri")
        except OAuthError as exc:  # nowhere trustworthy to redirect to
            return self._error_response(exc, request)
        state = params.get("state")
        mode = params.get("response_mode", "query")
        try:
            if params.get("response_type") != "code":
                raise OAuthError("unsupported_response_type", 700054,
                                 "response_type 'code' is the only one this identity provider supports.")
            method = params.get("code_challenge_method", "plain")
            if method not in ("S256", "plain"):
                raise OAuthError("invalid_request", 501491,
                                 f"Invalid code_challenge_method '{method}'. Use S256 or plain.")
            scopes = self._delegated_scopes(required_param(params, "scope"))
        except OAuthError as exc:
            reply = {"error": exc.error, "error_description": f"AADSTS{exc.code}: {exc.message}"}
            return redirect(redirect_uri, mode, reply, state)
        code = secrets.token_urlsafe(32)
        self._codes[code] = Grant(
            client_id=client_id,
            scopes=scopes,
            expires_at=time.time() + self.code_lifetime,
            redirect_uri=redirect_uri,
            code_challenge=params.get("code_challenge"),
            code_challenge_method=method,
            nonce=params.get("nonce"),
        )
        return redirect(redirect_uri, mode, {"code": code, "session_state": str(uuid.uuid4())}, state)

    async def _device_code(self, request: Request) -> Response:
        """Start a device-code sign-in; the emulated user approves it at once, so the first poll wins."""
        try:
            self._check_tenant(request.path_params["tenant"])
            form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
            client_id = required_param(form, "client_id")
            self._check_client(client_id)
            scopes = self._delegated_scopes(required_param(form, "scope"))
        except OAuthError as exc:
            return self._error_response(exc, request)
        device_code = secrets.token_urlsafe(32)
        user_code = secrets.token_hex(4).upper()
        self._device_codes[device_code] = Grant(client_id=client_id, scopes=scopes,
                                                 expires_at=time.time() + self.code_lifetime)
        verification_uri = f"{self.base_url}/devicelogin"
        return JSONResponse({
            "device_code": device_code, "user_code": user_code, "verification_uri": verification_uri,
            "expires_in": self.code_lifetime, "interval": 1,
            "message": f"To sign in, use a web browser to open the page {verification_uri} and enter the code "
                       f"{user_code} to authenticate. (The emulator has already signed in {defaults.USER_NAME}.)",
        })

    async def _token(self, request: Request) -> Response:
        try:
            self._check_tenant(request.path_params["tenant"])
            form = {k: v[-1] for k, v in parse_qs((await request.body()).decode(), keep_blank_values=True).items()}
            client_id, secret = client_credentials(request, form)
            self._check_client(client_id)
            grant_type = required_param(form, "grant_type")
            authenticated = self._authenticate(client_id, secret, form)
            if grant_type == "client_credentials":
                body = self._client_credentials_grant(client_id, authenticated, form)
            elif grant_type == "authorization_code":
                body = self._authorization_code_grant(client_id, form)
            elif grant_type == "refresh_token":
                body = self._refresh_token_grant(client_id, form)
            elif grant_type == DEVICE_CODE_GRANT:
                body = self._device_code_grant(client_id, form)
            else:
                raise OAuthError("unsupported_grant_type", 70003,
                                 f"The app requested an unsupported grant type '{grant_type}'.")
        except OAuthError as exc:
            return self._error_response(exc, request)
        self.issued[grant_type] += 1
        self.issued_to[client_id] += 1
        return JSONResponse(body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})

    # -- grants ------------------------------------------------------------------------------

    def _client_credentials_grant(self, client_id: str, authenticated: bool, form: dict[str, Any]) -> dict[str, Any]:
        if not authenticated:
            raise OAuthError("invalid_client", 7000218,
                             "The request body must contain the following parameter: "
                             "'client_assertion' or 'client_secret'.", status=401)
        scope = required_param(form, "scope")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise OAuthError("invalid_scope", 1002012,
                             f"The provided value for scope {scope} is not valid. Client credential flows "
                             "must have a scope value with /.default suffixed to the resource identifier "
                             "(application ID URI).")
        self._check_resource(scopes[0].removesuffix(".default"))
        oid = self.app_user_oids.get(client_id, defaults.APP_USER_OBJECT_ID)
        claims = {"oid": oid, "sub": oid, "idtyp": "app",
                  "roles": []}
        return {"token_type": "Bearer", "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime, "access_token": self._access_token(client_id, claims)}

    def _authorization_code_grant(self, client_id: str, form: dict[str, Any]) -> dict[str, Any]:
        code = required_param(form, "code")
        grant = self._codes.pop(code, None)
        if grant is None:
            if code in self._redeemed:
                raise OAuthError("invalid_grant", 54005,
                                 "OAuth2 Authorization code was already redeemed, please retry with a new "
                                 "valid code or use an existing refresh token.")
            raise OAuthError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        self._redeemed.add(code)
        if grant.expires_at <= time.time():
            raise OAuthError("invalid_grant", 70008,
                             "The provided authorization code or refresh token has expired due to "
                             "inactivity. Send a new interactive authorization request for this user "
                             "and resource.")
        if grant.client_id != client_id:
            raise OAuthError("invalid_grant", 70000,
                             "Provided grant is invalid or malformed: it was issued to another client.")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise OAuthError("invalid_grant", 50011,
                             f"The redirect URI '{form.get('redirect_uri')}' specified in the request does "
                             "not match the redirect URI used to obtain the authorization code.")
        if grant.code_challenge is not None and not pkce_matches(grant, form.get("code_verifier")):
            raise OAuthError("invalid_grant", 50148,
                             "The code_verifier does not match the code_challenge supplied in the "
                             "authorization request for PKCE.")
        return self._user_tokens(client_id, grant.scopes, grant.nonce, form)

    def _refresh_token_grant(self, client_id: str, form: dict[str, Any]) -> dict[str, Any]:
        grant = self._refresh_tokens.pop(required_param(form, "refresh_token"), None)
        if grant is None or grant.client_id != client_id:
            raise OAuthError("invalid_grant", 70000,
                             "Provided grant is invalid or malformed: the refresh token is unknown, was "
                             "already used (refresh tokens rotate) or belongs to another client.")
        if grant.expires_at <= time.time():
            raise OAuthError("invalid_grant", 70008,
                             "The provided authorization code or refresh token has expired due to "
                             "inactivity. Send a new interactive authorization request for this user "
                             "and resource.")
        scopes = grant.scopes
        if form.get("scope"):
            requested = self._delegated_scopes(form["scope"])
            scopes = tuple(dict.fromkeys(requested + ("offline_access",)))
        return self._user_tokens(client_id, scopes, None, form)

    def _device_code_grant(self, client_id: str, form: dict[str, Any]) -> dict[str, Any]:
        grant = self._device_codes.pop(required_param(form, "device_code"), None)
        if grant is None or grant.client_id != client_id:
            raise OAuthError("invalid_grant", 9002313, "Invalid request. Request is malformed or invalid: "
                             "unknown or already used device_code.")
        if grant.expires_at <= time.time():
            raise OAuthError("expired_token", 70019, "Verification code expired.")
        return self._user_tokens(client_id, grant.scopes, None, form)

    def _user_tokens(self, client_id: str, scopes: tuple[str, ...], nonce: str | None, form: dict[str, Any]) -> dict[str, Any]:
        user = {"oid": defaults.USER_OBJECT_ID, "sub": defaults.USER_OBJECT_ID, "idtyp": "user",
                "scp": "user_impersonation", "name": defaults.USER_NAME, "upn": defaults.USER_EMAIL,
                "unique_name": defaults.USER_EMAIL}
        resource_scopes = [s for s in scopes if s not in OIDC_SCOPES]
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(resource_scopes),
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": self._access_token(client_id, user),
        }
        if "offline_access" in scopes:
            refresh_token = secrets.token_urlsafe(48)
            self._refresh_tokens[refresh_token] = Grant(
                client_id=client_id, scopes=scopes, expires_at=time.time() + self.refresh_token_lifetime)
            body["refresh_token"] = refresh_token
        if "openid" in scopes:
            body["id_token"] = self._id_token(client_id, nonce)
        if form.get("client_info") == "1":
            info = json.dumps({"uid": defaults.USER_OBJECT_ID, "utid": self.tenant_id}).encode()
            body["client_info"] = base64.urlsafe_b64encode(info).decode().rstrip("=")
        return body

    # -- tokens ------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign arbitrary claims with the provider's key (tests use it to forge unusual tokens)."""
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid})

    def _access_token(self, client_id: str, subject: dict[str, Any]) -> str:
        now = int(time.time())
        return self.sign({
            "aud": self.org_url, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + self.token_lifetime,
            "tid": self.tenant_id, "appid": client_id, "azp": client_id, "ver": "1.0",
            "uti": secrets.token_urlsafe(16), **subject,
        })

    def _id_token(self, client_id: str, nonce: str | None) -> str:
        now = int(time.time())
        claims = {
            "aud": client_id, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + self.token_lifetime,
            "sub": defaults.USER_OBJECT_ID, "oid": defaults.USER_OBJECT_ID, "tid": self.tenant_id,
            "name": defaults.USER_NAME, "preferred_username": defaults.USER_EMAIL, "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return self.sign(claims)

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """Claims of a valid `Bearer` access token for this org, or InvalidToken saying why not."""
        if not authorization:
            raise InvalidToken("invalid_request", "The request has no Authorization header with a bearer token.")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("invalid_request", "The Authorization header must be 'Bearer <access token>'.")
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] > time.time():
                return claims
            del self._verified[token]
            raise InvalidToken("invalid_token", "The access token has expired. Acquire a new token.")
        claims = self._decode(token)
        if len(self._verified) >= 50_000:
            self._verified.clear()
        self._verified[token] = claims
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token, self._public_key, algorithms=["RS256"], issuer=self.issuer,
                audience=[self.org_url, self.org_url + "/"],
                options={"require": ["exp", "iat", "aud", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("invalid_token", "The access token has expired. Acquire a new token.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("invalid_token",
                               f"The access token was not issued for this organization ({self.org_url}).") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("invalid_token", "The access token signature is invalid.") from None
        except jwt.DecodeError:
            raise InvalidToken("invalid_token", "The access token is malformed.") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("invalid_token", f"The access token is not valid: {exc}.") from None

    def unauthorized(self, exc: InvalidToken | None = None) -> Response:
        """The Web API's 401: empty body, WWW-Authenticate naming where to get a token."""
        return Response(status_code=401, headers={"WWW-Authenticate": self.challenge(exc)})

    def challenge(self, exc: InvalidToken | None = None) -> str:
        """The `WWW-Authenticate` value Dataverse sends with a 401 (plus RFC 6750 error details)."""
        value = f"Bearer authorization_uri={self.base_url}/{self.tenant_id}/oauth2/authorize, resource_id={self.org_url}/"
        if exc is not None:
            description = exc.description.replace('"', "'")
            value += f', error="{exc.error}", error_description="{description}"'
        return value

    # -- checks ------------------------------------------------------------------------------

    def _check_tenant(self, tenant: str) -> None:
        if tenant != self.tenant_id and tenant.lower() not in TENANT_ALIASES:
            raise OAuthError("invalid_tenant", 90002,
                             f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                             "ID and are signing into the correct cloud. Check with your subscription "
                             "administrator, this may happen if there are no active subscriptions for the "
                             "tenant.")

    def _check_client(self, client_id: str) -> None:
        if client_id not in self.clients:
            raise OAuthError("unauthorized_client", 700016,
                             f"Application with identifier '{client_id}' was not found in the directory "
                             f"'{defaults.ORGANIZATION_NAME}'. This can happen if the application has not "
                             "been installed by the administrator of the tenant or consented to by any user "
                             "in the tenant. You may have sent your authentication request to the wrong "
                             "tenant.")

    def _authenticate(self, client_id: str, secret: str | None, form: dict[str, Any]) -> bool:
        """Check the client's secret or signed assertion; False when it sent none (a public client)."""
        if form.get("client_assertion"):
            if form.get("client_assertion_type") != JWT_BEARER:
                raise OAuthError("invalid_request", 9002313, "Invalid request. Request is malformed or invalid: "
                                 f"client_assertion_type must be '{JWT_BEARER}'.")
            self._check_assertion(client_id, form["client_assertion"])
            return True
        if secret is None:
            return False
        self._check_secret(client_id, secret)
        return True

    def _check_assertion(self, client_id: str, assertion: str) -> None:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.DecodeError:
            raise OAuthError("invalid_client", 50027, "JWT token is invalid or malformed.", status=401) from None
        thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")   # msal pads it
        registered = self._certificates.get(thumbprint)
        if registered is None or registered[0] != client_id:
            raise OAuthError("invalid_client", 700027,
                             "Client assertion failed signature validation: the certificate used to sign it "
                             f"is not registered on application '{client_id}'.", status=401)
        try:
            claims = jwt.decode(assertion, registered[1], algorithms=["RS256", "PS256"], audience=self.token_url,
                                options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_client", 700024, "Client assertion is not within its valid time range.",
                             status=401) from None
        except jwt.InvalidAudienceError:
            raise OAuthError("invalid_client", 700023,
                             f"Client assertion audience claim does not match the token endpoint {self.token_url}.",
                             status=401) from None
        except jwt.InvalidTokenError:
            raise OAuthError("invalid_client", 700027, "Client assertion failed signature validation.",
                             status=401) from None
        if claims["iss"] != client_id or claims["sub"] != client_id:
            raise OAuthError("invalid_client", 700021,
                             "Client assertion application identifier doesn't match 'client_id' parameter.",
                             status=401)

    def _check_secret(self, client_id: str, secret: str) -> None:
        if not secrets.compare_digest(secret.encode(), self.clients[client_id].encode()):
            raise OAuthError("invalid_client", 7000215,
                             "Invalid client secret provided. Ensure the secret being sent in the request "
                             "is the client secret value, not the client secret ID, for a secret added to "
                             f"app '{client_id}'.", status=401)

    def _check_resource(self, resource: str) -> None:
        if resource.rstrip("/").lower() != self.org_url.lower():
            raise OAuthError("invalid_resource", 500011,
                             f"The resource principal named {resource.rstrip('/')} was not found in the "
                             f"tenant named {defaults.ORGANIZATION_NAME}. This can happen if the application "
                             "has not been installed by the administrator of the tenant or consented to by "
                             "any user in the tenant. You might have sent your authentication request to "
                             "the wrong tenant.")

    def _delegated_scopes(self, scope: str) -> tuple[str, ...]:
        """Validate `{org}/user_impersonation` (or `/.default`) plus OpenID scopes; keep their order."""
        scopes = tuple(dict.fromkeys(scope.split()))
        resource_scopes = [s for s in scopes if s not in OIDC_SCOPES]
        if not resource_scopes:
            raise OAuthError("invalid_scope", 70011,
                             f"The provided value for the input parameter 'scope' is not valid. Ask for "
                             f"{self.org_url}/user_impersonation.")
        for item in resource_scopes:
            resource, _, permission = item.rpartition("/")
            if permission not in DELEGATED_PERMISSIONS:
                raise OAuthError("invalid_scope", 70011,
                                 f"The provided value for the input parameter 'scope' is not valid. The scope "
                                 f"'{item}' does not exist.")
            self._check_resource(resource)
        return scopes

    def _error_response(self, exc: OAuthError, request: Request) -> JSONResponse:
        trace_id = str(uuid.uuid4())
        correlation_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return JSONResponse(
            {
                "error": exc.error,
                "error_description": f"AADSTS{exc.code}: {exc.message} Trace ID: {trace_id} "
                                     f"Correlation ID: {correlation_id} Timestamp: {stamp}",
                "error_codes": [exc.code],
                "timestamp": stamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{self.base_url}/error?code={exc.code}",
            },
            status_code=exc.status,
            headers={"Cache-Control": "no-store, no-cache"},
        )
