"""Request headers that change what Dataverse does: impersonation, bypassing logic, duplicates.

Actions build these with :func:`control_headers` and pass them as ``headers=`` to the client, so
each header name is spelled in one place.
"""

from __future__ import annotations

from d365_components.connections.odata import is_guid

__all__ = ["BYPASS_STEPS", "ODATA_HEADERS", "control_headers", "prefer"]

ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}

BYPASS_STEPS = ("CustomSync", "CustomAsync")


def prefer(values: list[str] | None) -> dict[str, str]:
    """One ``Prefer`` header with every preference, comma-separated."""
    values = [v for v in (values or []) if v]
    return {"Prefer": ",".join(dict.fromkeys(values))} if values else {}


def control_headers(
    *,
    caller_object_id: str | None = None,
    caller_id: str | None = None,
    bypass_custom_plugins: bool = False,
    bypass_business_logic: list[str] | tuple[str, ...] | None = None,
    duplicate_detection: bool | None = None,
    strong_consistency: bool = False,
    solution: str | None = None,
) -> dict[str, str]:
    """Headers for one request.

    Args:
        caller_object_id: impersonate the user with this Entra object id (``CallerObjectId``).
        caller_id: impersonate by systemuserid (legacy ``MSCRMCallerID``).
        bypass_custom_plugins: skip custom synchronous plug-ins (needs prvBypassCustomPlugins).
        bypass_business_logic: ``["CustomSync"]``, ``["CustomAsync"]`` or both.
        duplicate_detection: True runs duplicate-detection rules (the Web API skips them by default).
        strong_consistency: bypass metadata and permission caches right after a change.
        solution: unique name of the solution that metadata changes are added to.
    """
    headers: dict[str, str] = {}
    if caller_object_id:
        if not is_guid(caller_object_id):
            raise ValueError(f"callerObjectId: '{caller_object_id}' is not a GUID")
        headers["CallerObjectId"] = caller_object_id.strip("{}")
    if caller_id:
        if not is_guid(caller_id):
            raise ValueError(f"callerId: '{caller_id}' is not a GUID")
        headers["MSCRMCallerID"] = caller_id.strip("{}")
    if bypass_custom_plugins:
        headers["MSCRM.BypassCustomPluginExecution"] = "true"
    if bypass_business_logic:
        unknown = [s for s in bypass_business_logic if s not in BYPASS_STEPS]
        if unknown:
            raise ValueError(f"bypassBusinessLogic: {unknown} (allowed: {', '.join(BYPASS_STEPS)})")
        headers["MSCRM.BypassBusinessLogicExecution"] = ",".join(bypass_business_logic)
    if duplicate_detection is not None:
        headers["MSCRM.SuppressDuplicateDetection"] = "false" if duplicate_detection else "true"
    if strong_consistency:
        headers["Consistency"] = "Strong"
    if solution:
        headers["MSCRM.SolutionUniqueName"] = solution
    return headers
