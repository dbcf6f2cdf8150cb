"""The emulator's behaviours around the data plane: faults, service protection, change tracking,
webhooks. `install(app, settings=EmulatorFeatures(...))` wraps the app built by `create_app` in
their ASGI middleware and registers their store listeners; it is the one place they plug in.

Order, outermost first: service protection (counts and times every Web API request, so injected
latency counts as execution time and injected failures as requests), fault injection, change
tracking (answers delta requests itself), webhooks (delivers synchronous steps before the
response), then the app. Each part is reachable on `app.state` for run-time control in tests:
`faults`, `protection`, `change_tracking`, `webhooks` (None when turned off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from d365_components.emulator.events.change_tracking import ChangeTracking, ChangeTrackingErrors
from d365_components.emulator.events.webhooks import Webhooks
from d365_components.emulator.limits.faults import FaultInjector, Faults
from d365_components.emulator.limits.latency import Latency, LatencyMiddleware
from d365_components.emulator.limits.protection import Limits, ServiceProtection
from d365_components.emulator.limits.request_size import RequestSize


@dataclass
class EmulatorFeatures:
    """Every setting of the extensions, with Dataverse's defaults."""

    # fault injection (app.state.faults.configure(...) at run time): a spec string ("429=0.1,drop=0.01,latency=20ms,seed=7") or Faults; None = none
    faults: Faults | str | None = None
    # server time added per request and per written row, a sleep (benchmarks); None = none
    latency: Latency | None = None
    # service protection limits per user; None turns them off
    limits: Limits | None = field(default_factory=Limits)
    # change tracking: tokens older than this fail (Dataverse: ExpireChangeTrackingInDays, default 7)
    change_tracking: bool = True
    change_token_max_age: float = 7 * 86400.0
    change_tracking_errors: ChangeTrackingErrors = field(default_factory=ChangeTrackingErrors)
    # webhooks (serviceendpoints + sdkmessageprocessingsteps)
    webhooks: bool = True
    webhook_timeout: float = 60.0
    webhook_verify: bool | str = True          # TLS check of webhook URLs: a CA bundle path, or False
    webhook_max_payload: int = 256 * 1024
    webhook_retry_statuses: tuple[int, ...] = (502, 503, 504)
    # what a failed synchronous delivery answers the Web API caller (UNCONFIRMED in Dataverse)
    webhook_sync_error: tuple[int, str, str] = (
        400, "0x80040265",
        "Endpoint unavailable: the webhook '{endpoint}' could not be reached or answered {status}.")


class ExtendedApp:
    """The wrapped ASGI app; `state` and everything else read through to the inner app."""

    def __init__(self, app: Starlette, outer: ASGIApp) -> None:
        self.app = app
        self._outer = outer

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._outer(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def install(app: Starlette | ExtendedApp, *, settings: EmulatorFeatures | None = None) -> ExtendedApp:
    """Wrap `app` (from `create_app`) in the extensions that `settings` turn on. Installing on an
    app that already has them replaces the earlier install (its listeners are removed)."""
    settings = settings or EmulatorFeatures()
    if isinstance(app, ExtendedApp):
        app = app.app
    state = app.state
    _uninstall(state)
    before = list(state.store.listeners)
    outer: ASGIApp = app
    if settings.webhooks:
        outer = Webhooks(outer, state, settings)
        state.webhooks = outer
    if settings.change_tracking:
        outer = ChangeTracking(outer, state, max_age=settings.change_token_max_age,
                               errors=settings.change_tracking_errors)
        state.change_tracking = outer
    if settings.latency is not None:
        outer = LatencyMiddleware(outer, settings.latency)
    state.faults = outer = FaultInjector(outer, settings.faults)
    protection = ServiceProtection(outer, settings.limits)
    protection.enabled = settings.limits is not None
    state.protection = outer = protection
    outer = RequestSize(outer)
    state.extension_listeners = [x for x in state.store.listeners if x not in before]
    state.features = settings
    return ExtendedApp(app, outer)


def _uninstall(state: State) -> None:
    """Undo an earlier install: its store listeners go, its delivery worker stops."""
    for listener in getattr(state, "extension_listeners", ()):
        if listener in state.store.listeners:
            state.store.listeners.remove(listener)
    webhooks = getattr(state, "webhooks", None)
    if webhooks is not None:
        webhooks.close()
    state.webhooks = state.change_tracking = None
