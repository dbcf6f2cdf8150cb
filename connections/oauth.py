"""The Dynamics 365 connections: OAuth 2.0 with Microsoft Entra ID through msal.

Three kinds, each a permanent key:

* ``dynamics365.oauth2_client_credentials`` — an app registration with a client secret, acting
  as its application user (server to server).
* ``dynamics365.oauth2_certificate`` — the same with a certificate (PEM private key plus the
  thumbprint or the PEM certificate) instead of a secret.
* ``dynamics365.oauth2_auth_code`` — a user signs in through the browser (authorization code with
  PKCE); the refresh token keeps the connection alive. Hosts drive :meth:`authorization_url` and
  :meth:`exchange_code`.

A connection opens one :class:`~d365_components.connections.client.WebApiClient` and reuses it:
hosts keep one connection per configuration (a new one per call means a new pool and a new
token each time) and use it from one event loop, where its pool and locks live. ``aclose()`` may
be called any number of times; the next ``open_client()`` starts afresh with the cached token.
TLS trust comes from ``caBundle`` (or certifi's bundle), never from ``REQUESTS_CA_BUNDLE`` or
``SSL_CERT_FILE``. Every secret is registered for redaction the moment the connection holds it.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import msal
from pydantic import ConfigDict, SecretStr

from d365_components.connections.client import WebApiClient
from d365_components.connections.clouds import (
    CLOUD_LABELS,
    CLOUDS,
    Cloud,
    OrgUrls,
    identity_hosts,
    normalize_org_url,
)
from d365_components.connections.errors_map import aad_error
from d365_components.connections.odata import RawLiteral
from d365_components.connections.retry import RetryPolicy
from d365_components.connections.shared_state import (
    InProcessState,
    SharedState,
    app_user_key,
    open_shared_state,
)
from d365_components.connections.tokens import (
    BearerAuth,
    FileTokenCache,
    IdentityHttpClient,
    MsalTokenSource,
    make_ssl_context,
)
from d365_components.conventions import GUID_PATTERN
from d365_components.definitions import Connection
from d365_components.errors import (
    AuthenticationError,
    ConnectionConfigError,
    DataverseError,
    PermissionDeniedError,
    TransientError,
)
from d365_components.inputs import InputField, InputModel, absent, forbidden, rules, validate_inputs
from d365_components.redaction import Redaction, get_logger, register_secret

__all__ = [
    "AuthCodeConnection",
    "CertificateConnection",
    "ClientCredentialsConnection",
    "DynamicsConnection",
    "FileTokenCache",
    "Redaction",
]

log = get_logger("d365_components.connections.oauth")

_TENANT_PATTERN = (
    r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
    r"|organizations|common|consumers)$"
)
_TOKEN_PATH = re.compile(r"/oauth2(?:/v2\.0)?/token/?$", re.IGNORECASE)
_AUTHORIZE_PATH = re.compile(r"/oauth2(?:/v2\.0)?/authorize/?$", re.IGNORECASE)


class _Site(InputModel):
    """Where the environment is."""

    web_api_url: str = InputField(
        title="Environment URL",
        description=(
            "The Dataverse environment (org) URL, e.g. https://contoso.crm.dynamics.com. The Web API "
            "form (…/api/data/v9.2) and the .api. host form are accepted too."
        ),
        examples=["https://contoso.crm.dynamics.com"],
        min_length=1,
    )
    cloud: Cloud = InputField(
        Cloud.public,
        title="Cloud",
        description="Microsoft cloud of the environment: public, gcc, gcchigh, dod or china. Picks the sign-in host.",
        enum_labels=CLOUD_LABELS,
    )


class _App(InputModel):
    """Which app registration signs in."""

    client_id: str = InputField(
        title="Client ID",
        description="Application (client) ID of the app registration in Microsoft Entra ID.",
        pattern=GUID_PATTERN,
        examples=["11111111-2222-3333-4444-555555555555"],
    )


class _Advanced(InputModel):
    """Settings most users leave alone (shown collapsed)."""

    authority_host: str | None = InputField(
        None,
        title="Authority host",
        description="Override the sign-in host (e.g. https://login.microsoftonline.us). Derived from the cloud when empty.",
        advanced=True,
    )
    token_url: str | None = InputField(
        None,
        title="Token URL",
        description=(
            "The token endpoint (…/{tenant}/oauth2/v2.0/token), as Prismatic's connection takes it: the tenant is "
            "read from it, so Tenant ID may then be left empty. Derived from the tenant when empty."
        ),
        examples=["https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"],
        advanced=True,
    )
    scopes: str | None = InputField(
        None,
        title="Scopes",
        description="Space-separated OAuth scopes. Derived from the environment URL when empty.",
        advanced=True,
    )
    allow_custom_host: bool = InputField(
        False,
        title="Allow a custom host",
        description="Accept an environment or sign-in host that is not a Microsoft one (an emulator or a proxy).",
        advanced=True,
    )
    ca_bundle: str | None = InputField(
        None,
        title="CA bundle",
        description="Path to a PEM file of CA certificates to trust instead of the public ones (private CAs, emulators).",
        advanced=True,
    )
    timeout_seconds: float = InputField(
        120.0, title="Timeout (seconds)", description="How long one request may take.", gt=0, le=3600, advanced=True
    )
    max_retries: int = InputField(
        5,
        title="Retries",
        description="How many times a throttled or failed request is tried again (0 turns retries off).",
        ge=0,
        le=20,
        advanced=True,
    )
    retry_budget_seconds: float = InputField(
        120.0,
        title="Retry budget (seconds)",
        description="Total time a request may spend waiting between retries.",
        ge=0,
        le=3600,
        advanced=True,
    )
    max_concurrency: int = InputField(
        52,
        title="Concurrent requests",
        description="Requests in flight at once (Dataverse's service protection allows 52 per user).",
        ge=1,
        le=1000,
        advanced=True,
    )
    caller_object_id: str | None = InputField(
        None,
        title="Impersonate user (object ID)",
        description="Entra object ID of a user to act as on every request (CallerObjectId); needs the Delegate role.",
        pattern=GUID_PATTERN,
        advanced=True,
    )
    shared_state_url: SecretStr | None = InputField(
        None,
        title="Shared state (Redis URL)",
        description=(
            "Share the service-protection budget, the token cache and locks with every process that uses "
            "this app user, on Redis (redis://host:6379/0; may hold a password). Empty: this process only."
        ),
        examples=["redis://127.0.0.1:6379/0"],
        min_length=1,
        advanced=True,
    )
    redaction: Redaction = InputField(
        Redaction.secrets,
        title="Redaction",
        description=(
            "What to hide in error messages and logs besides secrets: 'secrets' (nothing more), 'org' "
            "(the environment host) or 'identifiers' (the host and every GUID)."
        ),
        enum_labels={Redaction.secrets: "Secrets only", Redaction.org: "Secrets and environment host",
                     Redaction.identifiers: "Secrets, host and GUIDs"},
        advanced=True,
    )


# A form lists fields in the order of an Inputs class's bases from last to first:
# site, tenant, app registration, credential, then the advanced settings.


class _Tenant(InputModel):
    """The tenant, given itself or inside the Token URL (one of the two is required)."""

    model_config = ConfigDict(json_schema_extra=rules(forbidden(
        "give tenantId or tokenUrl (the Token URL names the tenant)", ["tenantId", "tokenUrl"],
        absent("tenantId"), absent("tokenUrl"),
    )))

    tenant_id: str | None = InputField(
        None,
        title="Tenant ID",
        description=(
            "Directory (tenant) ID or a verified domain such as contoso.onmicrosoft.com. "
            "Optional when the Token URL is given: the tenant is then taken from it."
        ),
        pattern=_TENANT_PATTERN,
    )


class _ClientSecret(InputModel):
    client_secret: SecretStr = InputField(
        title="Client secret",
        description="The client secret's Value from the app registration (Certificates & secrets).",
        min_length=1,
    )


class DynamicsConnection(Connection):
    """Shared behaviour: URL checks, TLS, the token source, the client and the connection test."""

    #: the default scope suffix(es) after the org URL.
    default_scope_suffixes: ClassVar[tuple[str, ...]] = ("/.default",)

    def __init__(self, inputs: Any, *, token_cache: msal.SerializableTokenCache | None = None) -> None:
        if isinstance(inputs, dict):
            inputs = self.validate(inputs)
        super().__init__(inputs)
        self._register_secrets()
        self.org: OrgUrls = normalize_org_url(
            inputs.web_api_url, cloud=inputs.cloud, allow_custom_host=inputs.allow_custom_host
        )
        self.authority = self._authority()
        self.scopes = self._scopes()
        self.ssl_context = make_ssl_context(inputs.ca_bundle)
        url = getattr(inputs, "shared_state_url", None)
        #: where the budget, tokens and locks of this app user live (this process, or Redis)
        self.shared: SharedState = open_shared_state(url.get_secret_value() if url else None)
        self.app_user = app_user_key(self.org.org_url, str(getattr(inputs, "client_id", "")))
        if token_cache is None:
            token_cache = self.shared.token_cache(self.app_user)
        self.token_cache = token_cache
        self._identity_http: httpx.Client | None = None
        self._client: WebApiClient | None = None
        self.tokens = self._token_source()

    @classmethod
    def validate(cls, raw: dict[str, Any]) -> Any:
        """Typed inputs from raw (camelCase) values, checked against the published schema.

        Raises:
            InputValidationError: naming every failing field.
        """
        return validate_inputs(cls.input_schema(), cls.Inputs, raw, subject=f"{cls.label} inputs")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, org={self.org.host!r})"

    # -- configuration -----------------------------------------------------------------------

    def _register_secrets(self) -> None:
        for name in type(self.inputs).model_fields:
            value = getattr(self.inputs, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                register_secret(secret)
                for line in secret.splitlines():  # PEM keys: each base64 line on its own too
                    if len(line) >= 16 and not line.startswith("-----"):
                        register_secret(line)

    def _tenant(self) -> str:
        """The tenant: tenantId, or else the one the Token URL names (Prismatic gives only that)."""
        if self.inputs.tenant_id:
            return str(self.inputs.tenant_id)
        if self.inputs.token_url:
            return self._authority_from(self.inputs.token_url, _TOKEN_PATH, "tokenUrl").rstrip("/").rsplit("/", 1)[-1]
        raise ConnectionConfigError("tenantId: is required unless tokenUrl is given (the Token URL names the tenant).")

    def _authority(self) -> str:
        inputs = self.inputs
        if inputs.token_url:
            authority = self._authority_from(inputs.token_url, _TOKEN_PATH, "tokenUrl")
            named = authority.rstrip("/").rsplit("/", 1)[-1]
            if not re.fullmatch(_TENANT_PATTERN, named):
                raise ConnectionConfigError(
                    f"tokenUrl: '{named}' is not a tenant; expected https://<host>/<tenant>/oauth2/v2.0/token."
                )
            if self._tenant().lower() not in (named.lower(), "organizations", "common"):
                raise ConnectionConfigError(
                    f"tokenUrl: names tenant '{named}' but tenantId is '{self._tenant()}'; make them agree "
                    "(or leave tokenUrl empty to derive it)."
                )
            return authority
        host = (inputs.authority_host or CLOUDS[inputs.cloud].login_host).rstrip("/")
        if "://" not in host:
            host = "https://" + host
        self._check_identity_host(host, "authorityHost")
        return f"{host}/{self._tenant()}"

    def _authority_from(self, url: str, suffix: re.Pattern[str], field: str) -> str:
        parts = urlsplit(url.strip())
        if not suffix.search(parts.path):
            endpoint = "token" if suffix is _TOKEN_PATH else "authorize"
            raise ConnectionConfigError(f"{field}: expected a URL ending in /oauth2/v2.0/{endpoint}.")
        self._check_identity_host(url, field)
        return f"{parts.scheme}://{parts.netloc}{suffix.sub('', parts.path)}"

    def _check_identity_host(self, url: str, field: str) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "https":
            raise ConnectionConfigError(f"{field}: must be an https:// URL (msal refuses plain http).")
        host = (parts.hostname or "").lower()
        if host not in identity_hosts() and not self.inputs.allow_custom_host:
            raise ConnectionConfigError(
                f"{field}: '{host}' is not a Microsoft sign-in host. Set allowCustomHost to use another identity provider."
            )

    def _scopes(self) -> list[str]:
        if self.inputs.scopes:
            return list(self.inputs.scopes.split())
        return [self.org.org_url + suffix for suffix in self.default_scope_suffixes]

    def identity_http(self) -> httpx.Client:
        """The blocking httpx client msal uses (our TLS trust, not the environment's)."""
        if self._identity_http is None:
            self._identity_http = IdentityHttpClient(
                verify=self.ssl_context, trust_env=False, timeout=min(60.0, self.inputs.timeout_seconds)
            )
        return self._identity_http

    def _credential(self) -> Any:
        raise NotImplementedError

    def _make_app(self) -> msal.ClientApplication:
        return msal.ConfidentialClientApplication(
            self.inputs.client_id,
            client_credential=self._credential(),
            authority=self.authority,
            instance_discovery=False,
            http_client=self.identity_http(),
            token_cache=self.token_cache,
            timeout=min(60.0, self.inputs.timeout_seconds),
        )

    def _token_source(self) -> MsalTokenSource:
        return MsalTokenSource(self._make_app, self.scopes, confidential=True, cache=self.token_cache)

    def retry_policy(self) -> RetryPolicy:
        inputs = self.inputs
        return RetryPolicy(max_attempts=inputs.max_retries + 1, budget=inputs.retry_budget_seconds)

    # -- the client --------------------------------------------------------------------------

    def open_client(self, *, transport: httpx.AsyncBaseTransport | None = None) -> WebApiClient:
        """The connection's Web API client: created once, then the same object."""
        if self._client is None or self._client.closed:
            self._client = WebApiClient(
                self.org,
                auth=BearerAuth(self.tokens),
                ssl_context=self.ssl_context,
                timeout=self.inputs.timeout_seconds,
                retry=self.retry_policy(),
                max_concurrency=self.inputs.max_concurrency,
                caller_object_id=self.inputs.caller_object_id,
                redaction=self.inputs.redaction,
                transport=transport,
            )
            self._client.limiter = self.shared.limiter(self.app_user, self.inputs.max_concurrency)
            if not isinstance(self.shared, InProcessState):
                self._client.shared = self.shared
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        if self._identity_http is not None:
            self._identity_http.close()
            self._identity_http = None
            self.tokens.forget_app()  # the msal app holds the closed client; the cache stays

    async def test(self) -> dict[str, Any]:
        """WhoAmI, plus the user's and org's names when readable; plain-words errors otherwise."""
        client = self.open_client()
        quick = RetryPolicy(max_attempts=2, budget=10.0)
        try:
            response = await client.request("GET", "WhoAmI", retry=quick)
        except PermissionDeniedError as exc:
            if exc.code == "0x80040220" or exc.status == 403:
                exc.hint = (
                    f"Signed in, but Dataverse refused the caller. For an app registration, add an "
                    f"application user for client id {self.inputs.client_id} in the Power Platform admin "
                    "center (Environment > Settings > Users + permissions > Application users) and give it "
                    "a security role."
                )
            raise
        except TransientError as exc:
            if not isinstance(exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout):
                raise
            raise ConnectionConfigError(
                f"Cannot reach {self.org.org_url}: check webApiUrl and the network ({exc.message})."
            ) from None
        who = response.json()
        result: dict[str, Any] = {
            "userId": who.get("UserId"),
            "businessUnitId": who.get("BusinessUnitId"),
            "organizationId": who.get("OrganizationId"),
            "webApiUrl": client.api_url,
        }
        user, org = await asyncio.gather(
            self._optional(client.retrieve("systemusers", who["UserId"], select=["fullname"])),
            self._optional(
                client.execute(
                    "RetrieveCurrentOrganization",
                    {"AccessType": RawLiteral("Microsoft.Dynamics.CRM.EndpointAccessType'Default'")},
                    function=True,
                )
            ),
        )
        if isinstance(user, dict) and user.get("fullname"):
            result["userName"] = user["fullname"]
        if isinstance(org, dict) and isinstance(org.get("Detail"), dict) and org["Detail"].get("FriendlyName"):
            result["organizationName"] = org["Detail"]["FriendlyName"]
        return result

    @staticmethod
    async def _optional(call: Any) -> Any:
        try:
            return await call
        except (DataverseError, TransientError) as exc:
            log.debug("connection test: optional lookup failed: %s", exc)
            return None


class ClientCredentialsConnection(DynamicsConnection):
    """Connect as an application user: an app registration's client ID and client secret.

    Needs an application user for the client ID in the Dataverse environment, with a security role.
    """

    key = "dynamics365.oauth2_client_credentials"
    label = "OAuth 2.0 client credentials (client secret)"

    class Inputs(_Advanced, _ClientSecret, _App, _Tenant, _Site):
        pass

    def _credential(self) -> Any:
        return self.inputs.client_secret.get_secret_value()


class CertificateConnection(DynamicsConnection):
    """Connect as an application user with a certificate instead of a secret.

    Give the PEM private key and either the certificate's thumbprint or the PEM certificate.
    """

    key = "dynamics365.oauth2_certificate"
    label = "OAuth 2.0 client credentials (certificate)"

    class _Certificate(InputModel):
        private_key: SecretStr = InputField(
            title="Private key (PEM)",
            description="The certificate's private key in PEM form (-----BEGIN PRIVATE KEY-----…).",
            min_length=1,
            widget="textarea",
        )
        thumbprint: str | None = InputField(
            None,
            title="Thumbprint",
            description="SHA-1 thumbprint of the certificate as shown in the app registration (hex). Optional when the certificate is given.",
            pattern=r"^[0-9A-Fa-f:]{40,95}$",
        )
        certificate: str | None = InputField(
            None,
            title="Certificate (PEM)",
            description="The public certificate in PEM form; its SHA-256 thumbprint is computed when no thumbprint is given.",
            widget="textarea",
        )
        passphrase: SecretStr | None = InputField(
            None, title="Key passphrase", description="Passphrase of an encrypted private key.", advanced=True
        )

    class Inputs(_Advanced, _Certificate, _App, _Tenant, _Site):
        pass

    def __init__(self, inputs: Any, **kwargs: Any) -> None:
        super().__init__(inputs, **kwargs)
        if not (self.inputs.thumbprint or self.inputs.certificate):
            raise ConnectionConfigError("thumbprint: give the certificate's thumbprint or the certificate (PEM).")
        if "PRIVATE KEY" not in self.inputs.private_key.get_secret_value():
            raise ConnectionConfigError("privateKey: is not a PEM private key (-----BEGIN PRIVATE KEY-----).")

    def _credential(self) -> Any:
        inputs = self.inputs
        credential: dict[str, Any] = {"private_key": inputs.private_key.get_secret_value()}
        if inputs.thumbprint:
            credential["thumbprint"] = inputs.thumbprint.replace(":", "")
        if inputs.certificate:
            credential["public_certificate"] = inputs.certificate
        if inputs.passphrase is not None:
            credential["passphrase"] = inputs.passphrase.get_secret_value()
        return credential


class AuthCodeConnection(DynamicsConnection):
    """Connect as a signed-in user: authorization code with PKCE, kept alive by a refresh token.

    The host sends the user to :meth:`authorization_url`, receives the redirect, and hands its
    query parameters to :meth:`exchange_code`. A client secret is optional (public clients).

    Hosts that keep several users' sign-ins in one token cache pass each connection its
    ``account_id`` (the ``accountId`` :meth:`exchange_code` returned); a connection never acts
    with another user's sign-in.
    """

    key = "dynamics365.oauth2_auth_code"
    label = "OAuth 2.0 authorization code (user sign-in)"
    default_scope_suffixes = ("/user_impersonation", "offline_access")

    class _User(InputModel):
        tenant_id: str = InputField(
            "organizations",
            title="Tenant ID",
            description="Directory (tenant) ID or verified domain; 'organizations' lets any work account sign in.",
            pattern=_TENANT_PATTERN,
        )

    class _OptionalSecret(InputModel):
        client_secret: SecretStr | None = InputField(
            None,
            title="Client secret",
            description="Client secret of a confidential web app; leave empty for a public client.",
        )
        authorize_url: str | None = InputField(
            None,
            title="Authorize URL",
            description="Override the authorization endpoint (…/{tenant}/oauth2/v2.0/authorize). Derived when empty.",
            advanced=True,
        )

    class Inputs(_Advanced, _OptionalSecret, _App, _User, _Site):
        pass

    def __init__(self, inputs: Any, *, account_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(inputs, **kwargs)
        self.tokens.account_id = account_id

    def _scopes(self) -> list[str]:
        if self.inputs.scopes:
            return list(self.inputs.scopes.split())
        return [f"{self.org.org_url}/user_impersonation", "offline_access"]

    def _authority(self) -> str:
        if self.inputs.authorize_url and not self.inputs.token_url:
            return self._authority_from(self.inputs.authorize_url, _AUTHORIZE_PATH, "authorizeUrl")
        return super()._authority()

    def _make_app(self) -> msal.ClientApplication:
        common = dict(
            authority=self.authority,
            instance_discovery=False,
            http_client=self.identity_http(),
            token_cache=self.token_cache,
            timeout=min(60.0, self.inputs.timeout_seconds),
        )
        if self.inputs.client_secret is not None:
            return msal.ConfidentialClientApplication(
                self.inputs.client_id, client_credential=self.inputs.client_secret.get_secret_value(), **common
            )
        return msal.PublicClientApplication(self.inputs.client_id, **common)

    def _token_source(self) -> MsalTokenSource:
        return _UserTokenSource(self._make_app, self.scopes, confidential=False, cache=self.token_cache)

    async def authorization_url(
        self, redirect_uri: str, state: str | None = None, *, login_hint: str | None = None, prompt: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Where to send the user, and the flow state to keep until the redirect comes back.

        The flow state holds the PKCE verifier (S256): keep it server-side, never in the browser.
        """
        def start() -> dict[str, Any]:
            app = self.tokens.app()
            with warnings.catch_warnings():  # msal recommends form_post; hosts here read the query
                warnings.simplefilter("ignore", UserWarning)
                flow: dict[str, Any] = app.initiate_auth_code_flow(
                    self.tokens.scopes, redirect_uri=redirect_uri, state=state, login_hint=login_hint,
                    prompt=prompt, response_mode="query",
                )
                return flow

        flow = await asyncio.to_thread(start)
        register_secret(flow.get("code_verifier"))
        return flow["auth_uri"], flow

    async def exchange_code(self, flow_state: dict[str, Any], callback_params: dict[str, Any]) -> dict[str, Any]:
        """Redeem the code from the redirect; returns who signed in (no tokens).

        ``accountId`` names the sign-in in the token cache: keep it to open this user's connection
        again on a shared cache (``AuthCodeConnection(inputs, token_cache=..., account_id=...)``).
        """
        register_secret(callback_params.get("code"))
        if callback_params.get("error"):
            raise aad_error(
                {"error": callback_params.get("error"), "error_description": callback_params.get("error_description")},
                context="Sign-in was not completed",
            )
        source: _UserTokenSource = self.tokens  # type: ignore[assignment]
        return await source.exchange(flow_state, callback_params)

    @property
    def signed_in(self) -> bool:
        return any(self.token_cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)) or bool(
            getattr(self.tokens, "_refresh_token", None)
        )


class _UserTokenSource(MsalTokenSource):
    """Tokens of a signed-in user: silent refresh through msal's account, or the raw refresh token
    when the identity provider returned no account information."""

    _refresh_token: str | None = None

    async def exchange(self, flow: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        def redeem() -> dict[str, Any]:
            app = self.app()
            result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, params)
            self._save_cache()
            return result

        try:
            result = await asyncio.to_thread(redeem)
        except ValueError as exc:  # msal: state mismatch or a flow that was already used
            raise AuthenticationError(f"Sign-in could not be completed: {exc}") from None
        if "access_token" not in result:
            raise aad_error(result, context="Sign-in failed")
        self.remember(result)
        claims = result.get("id_token_claims") or {}
        accounts = self.app().get_accounts()
        if claims.get("oid"):  # the cache may hold other users' sign-ins too: pick the one just made
            accounts = [a for a in accounts if a.get("local_account_id") == claims["oid"]]
        if len(accounts) == 1:
            self.account_id = accounts[0].get("home_account_id")
        elif result.get("refresh_token"):
            self._refresh_token = result["refresh_token"]
        return {
            "accountId": self.account_id,
            "userName": claims.get("preferred_username") or claims.get("name"),
            "objectId": claims.get("oid"),
            "tenantId": claims.get("tid"),
            "scopes": self.scopes,
        }

    def acquire(self, force: bool = False) -> dict[str, Any]:
        if self._refresh_token and self.account_id is None:
            self.acquisitions += 1
            result: dict[str, Any] = self.app().acquire_token_by_refresh_token(self._refresh_token, self.scopes)
            if result.get("refresh_token"):
                self._refresh_token = result["refresh_token"]  # refresh tokens rotate: keep the newest
                register_secret(self._refresh_token)
            self._save_cache()
            return result
        return super().acquire(force)
