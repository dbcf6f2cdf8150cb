"""`CalculateRollupField(Target=@p1,FieldName=@p2)` recomputes the account rollups `opendeals` and `openrevenue` from the account's open opportunities, and answers the row with the value, `<field>_date` and `<field>_state`. Importing this module registers it."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.messages.crm_parameters import reference_param, required_param, update_row
from d365_components.emulator.messages.registry import Bound, register_function
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    bad_request,
)
from d365_components.emulator.records.representation import represent
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.store import utc_now

# ---- CalculateRollupField -----------------------------------------------------------------------

def _open_deals(ctx: Ctx, account_id: str) -> int:
    return ctx.store.count("opportunity", "t0.parentaccountid = ? AND t0.statecode = 0", [account_id])


def _open_revenue(ctx: Ctx, account_id: str) -> float:
    rows = ctx.store.execute('SELECT coalesce(sum(estimatedvalue), 0) AS total FROM "opportunity" '
                             "WHERE parentaccountid = ? AND statecode = 0", [account_id])
    return float(rows[0]["total"])


#: (table, rollup column) -> how to compute it from the row's id
ROLLUPS = {
    ("account", "opendeals"): _open_deals,
    ("account", "openrevenue"): _open_revenue,
}


def calculate_rollup_field(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """Recompute a rollup column; the answer is the row with `<field>`, `<field>_date`, `<field>_state`."""
    table, row = reference_param(ctx, required_param(params, "Target", "CalculateRollupField"), "Target")
    field = required_param(params, "FieldName", "CalculateRollupField")
    if not isinstance(field, str):
        raise bad_request("The parameter 'FieldName' must be a column name.")
    compute = ROLLUPS.get((table.logical_name, field))
    if compute is None and field not in table.columns:
        raise bad_request(f"The attribute '{field}' is not a rollup attribute of '{table.logical_name}'.",
                          INVALID_ARGUMENT)
    payload: dict[str, Any] = {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity"}
    if compute is not None:
        value, now = compute(ctx, row[table.primary_id]), utc_now()
        stored = {k: v for k, v in {field: value, f"{field}_date": now, f"{field}_state": 1}.items()
                  if k in table.columns}
        if stored:
            with ctx.store.transaction():
                row = update_row(ctx, table.logical_name, row, stored)
        payload.update(represent(ctx, table, row, None, []))
        payload.update({field: value, f"{field}_date": now, f"{field}_state": 1})
    else:
        payload.update(represent(ctx, table, row, None, []))
    return Reply.json(200, payload)


register_function("CalculateRollupField", calculate_rollup_field)
