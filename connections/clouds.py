"""National clouds, and turning whatever URL a user pasted into the org URL and Web API URL.

Designers paste the org URL in many shapes: a bare host, with or without ``https://``, with a
trailing slash, with ``/api/data/v9.2``, or the ``org.api.crm.dynamics.com`` host form. All of
them name the same org; the OAuth audience is always ``https://{host}`` without ``.api.``.
The host suffix must belong to the chosen cloud, unless the user allows a custom host (an
emulator, a proxy) explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from d365_components.errors import ConnectionConfigError

__all__ = [
    "API_VERSION",
    "CLOUDS",
    "Cloud",
    "CloudInfo",
    "OrgUrls",
    "CLOUD_LABELS",
    "cloud_of_host",
    "identity_hosts",
    "normalize_org_url",
]

API_VERSION = "v9.2"


class Cloud(str, Enum):
    """Which Microsoft cloud the org lives in; it picks the sign-in host."""

    public = "public"
    gcc = "gcc"
    gcchigh = "gcchigh"
    dod = "dod"
    china = "china"


#: how a form names each cloud.
CLOUD_LABELS = {
    Cloud.public: "Commercial (public)",
    Cloud.gcc: "US Government (GCC)",
    Cloud.gcchigh: "US Government (GCC High)",
    Cloud.dod: "US Government (DoD)",
    Cloud.china: "China (21Vianet)",
}

@dataclass(frozen=True)
class CloudInfo:
    login_host: str
    #: host suffixes of Dataverse orgs in this cloud, longest first (crm9 is also dynamics.com).
    suffixes: tuple[str, ...]


CLOUDS: dict[Cloud, CloudInfo] = {
    Cloud.public: CloudInfo("https://login.microsoftonline.com", ("dynamics.com",)),
    Cloud.gcc: CloudInfo("https://login.microsoftonline.com", ("crm9.dynamics.com",)),
    Cloud.gcchigh: CloudInfo("https://login.microsoftonline.us", ("crm.microsoftdynamics.us",)),
    Cloud.dod: CloudInfo("https://login.microsoftonline.us", ("crm.appsplatform.us",)),
    Cloud.china: CloudInfo("https://login.chinacloudapi.cn", ("crm.dynamics.cn",)),
}

#: sign-in hosts accepted without allowCustomHost.
_EXTRA_LOGIN_HOSTS = ("login.microsoft.com", "login.windows.net", "login.partner.microsoftonline.cn")


def identity_hosts() -> set[str]:
    """Microsoft Entra sign-in host names of every cloud."""
    return {urlsplit(info.login_host).hostname or "" for info in CLOUDS.values()} | set(_EXTRA_LOGIN_HOSTS)


_API_PATH = re.compile(r"/api/data(?:/v\d+(?:\.\d+)?)?/?$", re.IGNORECASE)
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class OrgUrls:
    org_url: str  # https://contoso.crm.dynamics.com  (also the OAuth resource)
    api_url: str  # https://contoso.crm.dynamics.com/api/data/v9.2
    host: str


def cloud_of_host(host: str) -> Cloud | None:
    """The cloud whose Dataverse suffix matches ``host`` (longest suffix first)."""
    matches = [
        (len(suffix), cloud)
        for cloud, info in CLOUDS.items()
        for suffix in info.suffixes
        if host == suffix or host.endswith("." + suffix)
    ]
    return max(matches)[1] if matches else None


def normalize_org_url(
    value: str, *, cloud: Cloud | str = Cloud.public, allow_custom_host: bool = False, field: str = "webApiUrl"
) -> OrgUrls:
    """Org URL and Web API URL from what the user typed.

    Raises:
        ConnectionConfigError: naming ``field`` when the URL is empty, malformed, not https, not a
            Dynamics host of ``cloud`` (unless ``allow_custom_host``).
    """
    cloud = Cloud(cloud)
    text = (value or "").strip()
    if not text:
        raise ConnectionConfigError(f"{field}: is required (for example https://contoso.crm.dynamics.com).")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    host = (parts.hostname or "").lower()
    if parts.scheme.lower() != "https" and not allow_custom_host:
        raise ConnectionConfigError(f"{field}: must start with https:// (got {parts.scheme}://).")
    if not host or not _HOST.match(host):
        raise ConnectionConfigError(f"{field}: '{value}' is not a URL with a host name.")
    path = parts.path.rstrip("/")
    if path and not _API_PATH.search(path + "/"):
        raise ConnectionConfigError(
            f"{field}: unexpected path '{parts.path}'; give the org URL such as "
            "https://contoso.crm.dynamics.com (optionally ending in /api/data/v9.2)."
        )
    prefix = _API_PATH.sub("", path) if path else ""
    if ".api." in host and cloud_of_host(host) is not None:
        host = host.replace(".api.", ".", 1)
    found = cloud_of_host(host)
    if not allow_custom_host:
        expected = CLOUDS[cloud].suffixes
        if found is None:
            raise ConnectionConfigError(
                f"{field}: '{host}' is not a Dynamics 365 host (expected a name ending in "
                f"{' or '.join(expected)}). Set allowCustomHost to use another host, such as an emulator."
            )
        if cloud is Cloud.public and found is Cloud.gcc:
            pass  # GCC orgs live under dynamics.com too; the public sign-in host serves both
        elif found is not cloud:
            raise ConnectionConfigError(
                f"{field}: '{host}' belongs to the {found.value} cloud, but cloud is {cloud.value}. "
                "Choose the matching cloud."
            )
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    scheme = parts.scheme.lower() or "https"
    org_url = f"{scheme}://{netloc}{prefix}"
    return OrgUrls(org_url=org_url, api_url=f"{org_url}/api/data/{API_VERSION}", host=host)
