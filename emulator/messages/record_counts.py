"""`GET RetrieveTotalRecordCount(EntityNames=@p1)?@p1=["account","contact"]`: row counts per table.

Dataverse answers `{"EntityRecordCountCollection": {"Count": n, "IsReadOnly": false, "Keys": [...],
"Values": [...]}}` from a snapshot refreshed about every 24 hours; the emulator counts exactly (a test
that creates rows sees them counted at once, where the real service may lag). An unknown table
name is Dataverse's missing-entity error.
"""

from __future__ import annotations

from typing import Any

from d365_components.emulator.messages.registry import Bound, register_function
from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, bad_request
from d365_components.emulator.request.context import Ctx, Reply


def retrieve_total_record_count(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    for name in params:
        if name != "EntityNames":
            raise bad_request(f"The parameter '{name}' is not a parameter of the function RetrieveTotalRecordCount.")
    names = params.get("EntityNames")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise bad_request("EntityNames must be an array of table logical names.", INVALID_ARGUMENT)
    values = []
    for name in names:
        if name not in ctx.schema.tables:
            raise bad_request(f"The entity with a name = '{name}' with namemapping = 'Logical' was not found in "
                              "the MetadataCache.", INVALID_ARGUMENT)
        values.append(ctx.store.count(name))
    return Reply.json(200, {
        "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.RetrieveTotalRecordCountResponse",
        "EntityRecordCountCollection": {"Count": len(names), "IsReadOnly": False, "Keys": names, "Values": values},
    })


register_function("RetrieveTotalRecordCount", retrieve_total_record_count)
