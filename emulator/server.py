"""Run the embedded Dataverse as a real server: uvicorn on a loopback port, HTTPS by default.

`Emulator` is what tests, the demo and benchmarks start (a context manager running uvicorn in a
background thread); `run_standalone` is what `d365 emulator` calls to serve until Ctrl-C. The port
is bound before the app is built, so the org URL (the token audience) is known up front.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import signal
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from d365_components.emulator import defaults
from d365_components.emulator.extensions import EmulatorFeatures, install
from d365_components.emulator.identity.app_users import add_app_users
from d365_components.emulator.identity.provider import IdentityProvider
from d365_components.emulator.limits.faults import Faults
from d365_components.emulator.limits.latency import Latency
from d365_components.emulator.tls import Certificates, make_certificates, user_cache_dir
from d365_components.emulator.web_api.app import create_app

API_PATH = "/api/data/v9.2"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class Emulator:
    """An emulated Dataverse org with its identity provider, served on a free loopback port."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str = ":memory:",
        seed: str | None = "fresh",
        token_lifetime: int = 3600,
        tls: bool = True,
        cert_dir: str | Path | None = None,
        faults: str | Faults | None = None,
        features: EmulatorFeatures | None = None,
        latency: str | Latency | None = None,
        app_users: int = 1,
    ):
        """``features`` sets part 2 of the emulator (webhooks out, change tracking, service
        protection limits, faults); ``faults`` is a shortcut for its fault-injection spec; ``latency``
        adds server time per request and per written row, a sleep (``"30ms,per-row=0.2ms"``).
        ``app_users``: application users of the org, each with its own client id and
        service-protection budget (``app_user_credentials`` lists them, the default one first)."""
        self.tls = tls
        self.faults = Faults.parse(faults) if isinstance(faults, str) else faults
        self.latency = Latency.parse(latency) if isinstance(latency, str) else latency
        self._socket = _bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        url_host = f"[{host}]" if ":" in host else host
        self.org_url = f"{'https' if tls else 'http'}://{url_host}:{self.port}"
        self.api_url = self.org_url + API_PATH
        self.tenant_id = defaults.TENANT_ID
        self.client_id = defaults.CLIENT_ID
        self.client_secret = defaults.CLIENT_SECRET
        self.authority = f"{self.org_url}/{self.tenant_id}"
        self.identity = IdentityProvider(
            base_url=self.org_url,
            tenant_id=self.tenant_id,
            org_url=self.org_url,
            clients={self.client_id: self.client_secret},
            token_lifetime=token_lifetime,
        )
        self.token_url = self.identity.token_url
        self.authorize_url = self.identity.authorize_url
        self._certificates: Certificates | None = make_certificates(cert_dir) if tls else None
        self.ca_bundle: str | None = str(self._certificates.ca_bundle) if self._certificates else None
        try:
            features = features or EmulatorFeatures()
            if self.faults is not None:
                features = dataclasses.replace(features, faults=self.faults)
            if self.latency is not None:
                features = dataclasses.replace(features, latency=self.latency)
            self.app = install(
                create_app(identity=self.identity, org_url=self.org_url, db=db, seed=seed), settings=features
            )
            extra = add_app_users(self.identity, self.app.state.store, app_users - 1) if app_users > 1 else []
        except BaseException:
            self._socket.close()
            raise
        self.app_user_credentials: list[tuple[str, str]] = [(self.client_id, self.client_secret), *extra]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"Emulator(org_url={self.org_url!r}, {state})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._thread is not None:
            return self
        config = uvicorn.Config(
            self.app,
            http="httptools" if _installed("httptools") else "auto",
            loop="uvloop" if _installed("uvloop") else "asyncio",
            log_level="warning",
            access_log=False,
            proxy_headers=False,        # loopback only: no proxy to trust, one middleware less per request
            timeout_graceful_shutdown=2,
            ssl_certfile=str(self._certificates.certfile) if self._certificates else None,
            ssl_keyfile=str(self._certificates.keyfile) if self._certificates else None,
        )
        self._server = _QuickServer(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=f"emulator:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start on {self.org_url}")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        self._server = self._thread = None
        self._socket.close()
        webhooks = getattr(self.app.state, "webhooks", None)
        if webhooks is not None:
            webhooks.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- for clients -------------------------------------------------------------------------

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | bool:
        """What to pass as httpx `verify=`: a context trusting only the emulator's CA (or True for http)."""
        if self.ca_bundle is None:
            return True
        return ssl.create_default_context(cafile=self.ca_bundle)

    def connection_inputs(self, **overrides: Any) -> dict[str, Any]:
        """Inputs of our client-credentials connection, pointed at this emulator."""
        inputs: dict[str, Any] = {
            "webApiUrl": self.org_url,
            "tenantId": self.tenant_id,
            "clientId": self.client_id,
            "clientSecret": self.client_secret,
            "tokenUrl": self.token_url,
            "authorityHost": self.org_url,
            "allowCustomHost": True,
        }
        if self.ca_bundle is not None:
            inputs["caBundle"] = self.ca_bundle
        return {**inputs, **overrides}

    def get_token(self) -> str:
        """A fresh client-credentials access token, fetched with plain httpx."""
        response = httpx.post(
            self.token_url,
            data={"grant_type": "client_credentials", "client_id": self.client_id,
                  "client_secret": self.client_secret, "scope": f"{self.org_url}/.default"},
            verify=self.ssl_context,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token


class _QuickServer(uvicorn.Server):
    """uvicorn, except that stopping drops open connections at once: uvicorn would wait for idle
    keep-alive (TLS) connections until its graceful timeout, then log an ERROR."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        await super().shutdown(sockets)


def run_standalone(
    host: str = "127.0.0.1",
    port: int = 8443,
    db: str = ":memory:",
    seed: str | None = "fresh",
    faults: str | Faults | None = None,
    latency: str | Latency | None = None,
) -> None:
    """Serve until Ctrl-C (or SIGTERM), printing everything a client needs to connect."""
    emulator = Emulator(host=host, port=port, db=db, seed=seed, cert_dir=user_cache_dir(), faults=faults,
                        latency=latency)
    # Installed explicitly: a shell that starts us in the background has SIGINT ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with emulator:
            # one file per port: two emulators side by side never point at each other's org
            connection_file = write_connection_file(emulator, user_cache_dir() / f"connection-{emulator.port}.json")
            print(describe(emulator), flush=True)
            print(f"  d365 run dynamics365.get_current_user --connection @{connection_file}", flush=True)
            while emulator.running:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stale = user_cache_dir() / f"connection-{emulator.port}.json"
        stale.unlink(missing_ok=True)
    print("Emulator stopped.", flush=True)


def write_connection_file(emulator: Emulator, path: Path) -> Path:
    """Save the connection config for ``d365 run --connection @FILE`` (owner-only: it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {"key": "dynamics365.oauth2_client_credentials", "inputs": emulator.connection_inputs()}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    return path


def describe(emulator: Emulator) -> str:
    """The connection details and a ready-to-paste curl example."""
    cacert = f"--cacert {emulator.ca_bundle} " if emulator.ca_bundle else ""
    token_command = (
        f"curl -s {cacert}-d grant_type=client_credentials -d client_id={emulator.client_id} "
        f"-d client_secret={emulator.client_secret} --data-urlencode scope={emulator.org_url}/.default "
        f"{emulator.token_url} | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
    )
    lines = [
        "Dataverse emulator running (Ctrl-C to stop)",
        f"  Org URL:        {emulator.org_url}",
        f"  Web API URL:    {emulator.api_url}",
        f"  Tenant id:      {emulator.tenant_id}",
        f"  Client id:      {emulator.client_id}",
        f"  Client secret:  {emulator.client_secret}   (valid only against this emulator)",
        f"  Token URL:      {emulator.token_url}",
        f"  CA bundle:      {emulator.ca_bundle or '(plain http)'}",
        *([f"  Faults:         {emulator.faults}"] if emulator.faults else []),
        *([f"  Latency:        {emulator.latency}"] if emulator.latency else []),
        "",
        "Try it:",
        f'  curl {cacert}-H "Authorization: Bearer $({token_command})" {emulator.api_url}/WhoAmI',
    ]
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock
