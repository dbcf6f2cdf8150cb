"""Dataverse functions and actions (WhoAmI, RetrieveCurrentOrganization, ...): one routing table.

Another module adds a message in one call, without touching the router:

    from d365_components.emulator.messages.registry import register_action, Bound
    def win_opportunity(ctx: Ctx, params: dict, bound: Bound | None) -> Reply: ...
    register_action("WinOpportunity", win_opportunity)
    register_action("QualifyLead", qualify_lead, bound_to="lead")

A handler gets the request context, the parameters (function: from the URL, aliases resolved;
action: the JSON body) and, for bound operations, the table and row (row None when bound to the
collection). Functions answer GET, actions POST. The built-in message modules are listed in
emulator/messages/built_in.py, which the app imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.protocol.errors import (
    QUERY_NOT_SUPPORTED,
    bad_request,
    method_not_allowed,
    segment_not_found,
)
from d365_components.emulator.protocol.literals import Alias, parse_args, parse_literal, split_segment
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Table

NAMESPACE = "Microsoft.Dynamics.CRM."


@dataclass
class Bound:
    table: Table
    row: dict[str, Any] | None                # None when bound to the whole collection


Handler = Callable[[Ctx, dict[str, Any], "Bound | None"], Reply]
_functions: dict[tuple[str, str | None], Handler] = {}
_actions: dict[tuple[str, str | None], Handler] = {}


def register_function(name: str, handler: Handler, bound_to: str | None = None) -> None:
    _functions[(name, bound_to)] = handler


def register_action(name: str, handler: Handler, bound_to: str | None = None) -> None:
    _actions[(name, bound_to)] = handler


def unregister(name: str, bound_to: str | None = None) -> None:
    """Forget a function/action (tests register throwaway ones)."""
    _functions.pop((name, bound_to), None)
    _actions.pop((name, bound_to), None)


def is_unbound(name: str) -> bool:
    name = name.removeprefix(NAMESPACE)
    return (name, None) in _functions or (name, None) in _actions


def is_bound_action(name: str, table: str) -> bool:
    """True when the action `name` is bound to the collection of `table` (for sdkmessagefilter rows)."""
    return (name, table) in _actions


def invoke(ctx: Ctx, segment: str, bound: Bound | None = None) -> Reply:
    """Run the function or action named by a URL segment such as `WhoAmI()` or `Microsoft.Dynamics.CRM.X`."""
    name, arg_text = split_segment(segment)
    if bound is not None and not name.startswith(NAMESPACE):
        raise bad_request("Request message has unresolved parameters.")
    short = name.removeprefix(NAMESPACE)
    bound_to = bound.table.logical_name if bound is not None else None
    function = _functions.get((short, bound_to))
    action = _actions.get((short, bound_to))
    if function is None and action is None:
        raise segment_not_found(name)
    for option in ctx.query:
        if option.startswith("$"):     # a message's result is not a queryable collection
            raise bad_request(f"The query parameter {option} is not supported", QUERY_NOT_SUPPORTED)
    if ctx.method == "GET" and function is not None:
        return function(ctx, function_params(ctx, arg_text), bound)
    if ctx.method == "POST" and action is not None:
        if arg_text:
            raise bad_request(f"The action '{short}' takes its parameters in the request body.")
        return action(ctx, ctx.json_body() if ctx.body else {}, bound)
    raise method_not_allowed(ctx.method)


def function_params(ctx: Ctx, arg_text: str | None) -> dict[str, Any]:
    """`(A=@p1,B='x')` with `?@p1=...` -> {'A': ..., 'B': 'x'}."""
    if not arg_text:
        return {}
    _, named = parse_args(arg_text)
    params = {}
    for key, value in named.items():
        if isinstance(value, Alias):
            raw = ctx.query.get(value)
            value = parse_literal(raw) if raw is not None else None
        params[key] = value
    return params


# ---- built-in messages -----------------------------------------------------------------------

def _no_parameters(name: str, params: dict[str, Any]) -> None:
    for key in params:
        raise bad_request(f"The parameter '{key}' is not a parameter of the function {name}.")


def who_am_i(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    _no_parameters("WhoAmI", params)
    return Reply.json(200, {
        "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
        "BusinessUnitId": ctx.business_unit_id,
        "UserId": ctx.user_id,
        "OrganizationId": defaults.ORGANIZATION_ID,
    })


def retrieve_current_organization(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    _no_parameters("RetrieveCurrentOrganization", {k: v for k, v in params.items() if k != "AccessType"})
    access = params.get("AccessType", "Default")
    if access not in ("Default", "Internet", "Intranet"):
        raise bad_request(f"The value '{access}' is not a valid EndpointAccessType.")
    org = ctx.state.org_url
    org_row = ctx.store.get("organization", defaults.ORGANIZATION_ID) or {}
    return Reply.json(200, {
        "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.RetrieveCurrentOrganizationResponse",
        "Detail": {
            "OrganizationId": defaults.ORGANIZATION_ID,
            "FriendlyName": org_row.get("name") or defaults.ORGANIZATION_NAME,
            "OrganizationVersion": org_row.get("version") or "9.2.24101.00000",
            "EnvironmentId": f"Default-{defaults.TENANT_ID}",
            "DatacenterId": defaults.TENANT_ID,
            "Geo": "NA",
            "TenantId": defaults.TENANT_ID,
            "UrlName": org_row.get("uniquename") or "emulatedorg",
            "UniqueName": org_row.get("uniquename") or "emulatedorg",
            "State": "Enabled",
            "Endpoints": {
                "Count": 3, "IsReadOnly": False,
                "Keys": ["WebApplication", "OrganizationService", "OrganizationDataService"],
                "Values": [f"{org}/", f"{org}/XRMServices/2011/Organization.svc",
                           f"{org}/XRMServices/2011/OrganizationData.svc"],
            },
        },
    })


def retrieve_version(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    _no_parameters("RetrieveVersion", params)
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.RetrieveVersionResponse",
                            "Version": "9.2.24101.00000"})


register_function("WhoAmI", who_am_i)
register_function("RetrieveCurrentOrganization", retrieve_current_organization)
register_function("RetrieveVersion", retrieve_version)
