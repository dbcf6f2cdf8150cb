"""Quote to cash: prices and totals kept as Dataverse computes them, WinQuote / CloseQuote,
ConvertQuoteToSalesOrder and ConvertSalesOrderToInvoice. Importing this module registers the
messages; `install(store)` adds the `quoteclose` table and the pricing listener.

Pricing (after every write of a line, or of a header's discount, freight or price list):

* a line (quotedetail, salesorderdetail, invoicedetail) whose price is not overridden
  (`ispriceoverridden` false) takes `priceperunit` from the header's price list
  (productpricelevel.amount for its product); `baseamount` = quantity x priceperunit;
  `extendedamount` = baseamount - manualdiscountamount - volumediscountamount + tax;
* the header: `totallineitemamount` = sum of (baseamount - manualdiscountamount -
  volumediscountamount), `totallineitemdiscountamount` = sum of manualdiscountamount, `totaltax` =
  sum of tax, `totaldiscountamount` = discountamount + discountpercentage % of
  totallineitemamount, `totalamountlessfreight` = totallineitemamount - totaldiscountamount,
  `totalamount` = totalamountlessfreight + freightamount + totaltax.

WinQuote {QuoteClose, Status} closes an Active quote as Won (statecode 2) and records the quoteclose
activity; CloseQuote closes it as Lost, Canceled or Revised (statecode 3). ConvertQuoteToSalesOrder
{QuoteId, ColumnSet} wins an Active quote if needed and copies it and its lines (prices locked as
quoted) to a new order; ConvertSalesOrderToInvoice {SalesOrderId, ColumnSet} copies an order to a
new invoice and marks the order Invoiced. Both answer the new row (the ColumnSet's columns).
"""

from __future__ import annotations

from typing import Any

from d365_components.emulator import defaults
from d365_components.emulator.messages.crm_parameters import (
    entity_param,
    insert_row,
    integer_param,
    required_param,
    set_status,
    update_row,
)
from d365_components.emulator.messages.registry import NAMESPACE, Bound, register_action
from d365_components.emulator.protocol.errors import (
    INVALID_ARGUMENT,
    INVALID_OPERATION,
    DataverseError,
    bad_request,
    record_not_found,
)
from d365_components.emulator.protocol.literals import GUID_RE
from d365_components.emulator.records.representation import represent
from d365_components.emulator.records.write import convert_body
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.columns import (
    LookupSpec,
    datetime_column,
    memo_column,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.store import Store, utc_now
from d365_components.emulator.storage.table_builder import TableBuilder

#: line table -> (header table, the line's lookup to its header)
LINES = {"quotedetail": ("quote", "quoteid"), "salesorderdetail": ("salesorder", "salesorderid"), "invoicedetail": ("invoice", "invoiceid")}
HEADERS = {header: (line, column) for line, (header, column) in LINES.items()}
PRICING_INPUTS = ("discountamount", "discountpercentage", "freightamount", "pricelevelid")
QUOTE_ACTIVE, QUOTE_WON, QUOTE_CLOSED = 1, 2, 3
ORDER_INVOICED, ORDER_INVOICED_STATUS = 4, 100003
HEADER_COPY = ("name", "description", "customerid", "customeridtype", "pricelevelid", "transactioncurrencyid", "discountamount",
               "discountpercentage", "freightamount", "opportunityid", "paymenttermscode", "shippingmethodcode", "freighttermscode")
LINE_COPY = ("productid", "productdescription", "quantity", "priceperunit", "manualdiscountamount", "volumediscountamount", "tax",
             "uomid", "description", "lineitemnumber", "sequencenumber", "isproductoverridden")


def _money(value: Any) -> float:
    return float(value or 0)


# ---- pricing ------------------------------------------------------------------------------------

def install(store: Store) -> None:
    """Add quoteclose and the pricing listener (once per store)."""
    if "quote_to_cash" in store.installed or "quotedetail" not in store.schema.tables:
        return
    _add_quoteclose(store)

    def on_write(message: str, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        if table in LINES:
            header_table, column = LINES[table]
            if after is not None:
                after = _price_line(store, table, after)
            header_id = (after or before or {}).get(column)
            if header_id:
                _total(store, header_table, header_id)
        elif table in HEADERS and after is not None and (
                before is None or any(before.get(k) != after.get(k) for k in PRICING_INPUTS)):
            _total(store, table, after[f"{table}id"])

    store.listeners.append(on_write)
    store.installed.add("quote_to_cash")


def _add_quoteclose(store: Store) -> None:
    schema = store.schema
    if "quoteclose" in schema.tables:
        return
    with store.lock:
        builder = TableBuilder(schema)
        builder.table("quoteclose", "quotecloses", "activityid", "subject", 4211, "Quote Close", "Quote Closes", [
            string_column("subject", 200, "Subject"), memo_column("description", 2000, "Description"),
            datetime_column("actualend", "Actual End"), datetime_column("actualstart", "Actual Start"),
            LookupSpec("quoteid", {"quote": ("Quote_QuoteClose", "quoteid")}, "Quote"),
        ], activity=True, state=state_option_sets({0: "Open", 1: "Completed", 2: "Canceled"},
                                                  {1: ("Open", 0), 2: ("Completed", 1), 3: ("Canceled", 2)}),
            schema_name="QuoteClose")
        for rel in builder.pending:
            if rel.schema_name not in schema.relationships:
                schema.add_relationship(rel)
        schema.link()
        store.create_table(schema.tables["quoteclose"])


def _price_line(store: Store, table: str, line: dict[str, Any]) -> dict[str, Any]:
    header_table, column = LINES[table]
    header = store.get(header_table, line[column]) if line.get(column) else None
    price = line.get("priceperunit")
    if not line.get("ispriceoverridden") and line.get("productid") and header and header.get("pricelevelid"):
        listed = store.select("productpricelevel", "t0.pricelevelid = ? AND t0.productid = ?",
                              [header["pricelevelid"], line["productid"]], limit=1)
        if listed:
            price = listed[0].get("amount")
    base = round(_money(line.get("quantity")) * _money(price), 2)
    extended = round(base - _money(line.get("manualdiscountamount")) - _money(line.get("volumediscountamount"))
                     + _money(line.get("tax")), 2)
    wanted = {"priceperunit": _money(price), "baseamount": base, "extendedamount": extended}
    changes = {k: v for k, v in wanted.items() if line.get(k) is None or _money(line.get(k)) != v}
    if not changes:
        return line
    changed = store.update(table, line[f"{table}id"], changes, user=defaults.APP_USER_ID)
    return changed[1] if changed else line


def _total(store: Store, table: str, header_id: str) -> None:
    header = store.get(table, header_id)
    if header is None:
        return
    line_table, column = HEADERS[table]
    lines = store.select(line_table, f't0."{column}" = ?', [header_id])
    line_total = sum(_money(r.get("baseamount")) - _money(r.get("manualdiscountamount")) - _money(r.get("volumediscountamount"))
                     for r in lines)
    tax = sum(_money(r.get("tax")) for r in lines)
    discount = _money(header.get("discountamount")) + line_total * _money(header.get("discountpercentage")) / 100
    less_freight = line_total - discount
    totals = {"totallineitemamount": round(line_total, 2),
              "totallineitemdiscountamount": round(sum(_money(r.get("manualdiscountamount")) for r in lines), 2),
              "totaltax": round(tax, 2), "totaldiscountamount": round(discount, 2), "totalamountlessfreight": round(less_freight, 2),
              "totalamount": round(less_freight + _money(header.get("freightamount")) + tax, 2)}
    changes = {k: v for k, v in totals.items() if header.get(k) is None or _money(header.get(k)) != v}
    if changes:
        store.update(table, header_id, changes, user=defaults.APP_USER_ID)


# ---- WinQuote / CloseQuote ----------------------------------------------------------------------

def _close_quote(ctx: Ctx, params: dict[str, Any], message: str, state: int) -> Reply:
    status = integer_param(params, "Status", message)
    body = entity_param(params, "QuoteClose", message)
    table = ctx.schema.tables["quoteclose"]
    fields = {k: v for k, v in body.items() if k not in ("@odata.type", "activityid", "statecode", "statuscode")}
    values, _ = convert_body(ctx, table, fields, creating=True)
    if not values.get("quoteid"):
        raise bad_request('The QuoteClose must name its quote: "quoteid@odata.bind": "/quotes(<id>)".', INVALID_ARGUMENT)
    quote = ctx.store.get("quote", values["quoteid"])
    if quote is None:
        raise record_not_found("quote", values["quoteid"])
    allowed = (QUOTE_ACTIVE,) if state == QUOTE_WON else (0, QUOTE_ACTIVE)
    if quote.get("statecode") not in allowed:
        raise DataverseError(400, INVALID_OPERATION, f"The quote with Id {quote['quoteid']} cannot be closed: it is not "
                             f"{'active' if state == QUOTE_WON else 'open'} (statecode {quote.get('statecode')}).")
    status = set_status(ctx, ctx.schema.tables["quote"], quote["quoteid"], state, status)
    with ctx.store.transaction():
        now = values.get("actualend") or utc_now()
        insert_row(ctx, "quoteclose", {"subject": f"Quote Close - {'Won' if state == QUOTE_WON else 'Closed'}", **values,
                                       "actualend": now, "statecode": 1, "statuscode": 2})
        update_row(ctx, "quote", quote, {"statecode": state, "statuscode": status, "closedon": now[:10] + "T00:00:00Z"})
    return Reply.empty(204)


def win_quote(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    return _close_quote(ctx, params, "WinQuote", QUOTE_WON)


def close_quote(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    return _close_quote(ctx, params, "CloseQuote", QUOTE_CLOSED)


# ---- conversions ----------------------------------------------------------------------------------

def _guid_param(params: dict[str, Any], name: str, message: str) -> str:
    value = required_param(params, name, message)
    if not isinstance(value, str) or not GUID_RE.match(value):
        raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.Guid' (parameter '{name}').")
    return value.lower()


def _known(params: dict[str, Any], message: str, names: set[str]) -> None:
    unknown = sorted(set(params) - names)
    if "ProcessInstanceId" in unknown:
        raise bad_request(f"The emulator does not model {message}'s ProcessInstanceId (the new row's flow instance).")
    if unknown:
        raise bad_request(f"The parameter '{unknown[0]}' is not a parameter of {message}.")


def _columns(params: dict[str, Any], message: str) -> list[str] | None:
    """The ColumnSet's columns (None: all)."""
    column_set = required_param(params, "ColumnSet", message)
    if not isinstance(column_set, dict):
        raise bad_request("The parameter 'ColumnSet' must be an object: {\"AllColumns\": true} or {\"Columns\": [...]}.")
    if column_set.get("AllColumns") is True:
        return None
    columns = column_set.get("Columns")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise bad_request("The ColumnSet needs AllColumns true or a Columns list of column names.")
    return columns


def _copy(ctx: Ctx, source_table: str, source: dict[str, Any], target_table: str, link: str) -> dict[str, Any]:
    """Copy a header and its lines to `target_table` (lines priced as on the source); returns the new header."""
    target = ctx.schema.tables[target_table]
    values = {k: source.get(k) for k in HEADER_COPY if k in target.columns}
    values[link] = source[f"{source_table}id"]
    header = insert_row(ctx, target_table, values)
    source_lines, source_column = HEADERS[source_table]
    target_lines, target_column = HEADERS[target_table]
    line_table = ctx.schema.tables[target_lines]
    for line in ctx.store.select(source_lines, f't0."{source_column}" = ?', [source[f"{source_table}id"]],
                                 order="t0.sequencenumber, t0.createdon"):
        copied = {k: line.get(k) for k in LINE_COPY if k in line_table.columns}
        copied.update({target_column: header[f"{target_table}id"], "ispriceoverridden": True})
        if f"{source_lines}id" in line_table.columns:
            copied[f"{source_lines}id"] = line[f"{source_lines}id"]
        insert_row(ctx, target_lines, copied)
    return header


def _answer(ctx: Ctx, table_name: str, row_id: str, columns: list[str] | None) -> Reply:
    table = ctx.schema.tables[table_name]
    row = ctx.store.get(table_name, row_id)
    assert row is not None, "just created"
    body = represent(ctx, table, row, None, [])
    if columns is not None:
        keep = set(columns) | {table.primary_id} | {f"_{c}_value" for c in columns}
        body = {k: v for k, v in body.items() if k.split("@")[0] in keep or k.startswith("@odata")}
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata#{table.entity_set}/$entity",
                            "@odata.type": f"#{NAMESPACE}{table_name}", **body})


def convert_quote_to_sales_order(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """A new order from a quote (winning an active quote first)."""
    _known(params, "ConvertQuoteToSalesOrder", {"QuoteId", "ColumnSet", "QuoteCloseDate", "QuoteCloseStatus", "QuoteCloseSubject",
                                                 "QuoteCloseDescription"})
    quote_id = _guid_param(params, "QuoteId", "ConvertQuoteToSalesOrder")
    columns = _columns(params, "ConvertQuoteToSalesOrder")
    quote = ctx.store.get("quote", quote_id)
    if quote is None:
        raise record_not_found("quote", quote_id)
    if quote.get("statecode") not in (QUOTE_ACTIVE, QUOTE_WON):
        raise DataverseError(400, INVALID_OPERATION, f"The quote with Id {quote_id} must be active or won to become an order.")
    status = params.get("QuoteCloseStatus", 4)
    if quote.get("statecode") == QUOTE_ACTIVE:
        status = set_status(ctx, ctx.schema.tables["quote"], quote_id, QUOTE_WON, status if isinstance(status, int) else -1)
    with ctx.store.transaction():
        if quote.get("statecode") == QUOTE_ACTIVE:
            closed = str(params.get("QuoteCloseDate") or utc_now())
            insert_row(ctx, "quoteclose", {"subject": params.get("QuoteCloseSubject") or "Quote Close - Won",
                                           "description": params.get("QuoteCloseDescription"), "quoteid": quote_id,
                                           "actualend": closed, "statecode": 1, "statuscode": 2})
            quote = update_row(ctx, "quote", quote, {"statecode": QUOTE_WON, "statuscode": status, "closedon": closed[:10] + "T00:00:00Z"})
        order = _copy(ctx, "quote", quote, "salesorder", "quoteid")
    return _answer(ctx, "salesorder", order["salesorderid"], columns)


def convert_sales_order_to_invoice(ctx: Ctx, params: dict[str, Any], bound: Bound | None) -> Reply:
    """A new invoice from an order; the order becomes Invoiced."""
    _known(params, "ConvertSalesOrderToInvoice", {"SalesOrderId", "ColumnSet"})
    order_id = _guid_param(params, "SalesOrderId", "ConvertSalesOrderToInvoice")
    columns = _columns(params, "ConvertSalesOrderToInvoice")
    order = ctx.store.get("salesorder", order_id)
    if order is None:
        raise record_not_found("salesorder", order_id)
    if order.get("statecode") not in (0, 1):
        raise DataverseError(400, INVALID_OPERATION, f"The order with Id {order_id} is not active or submitted, so it cannot be invoiced.")
    with ctx.store.transaction():
        invoice = _copy(ctx, "salesorder", order, "invoice", "salesorderid")
        update_row(ctx, "salesorder", order, {"statecode": ORDER_INVOICED, "statuscode": ORDER_INVOICED_STATUS})
    return _answer(ctx, "invoice", invoice["invoiceid"], columns)


register_action("WinQuote", win_quote)
register_action("CloseQuote", close_quote)
register_action("ConvertQuoteToSalesOrder", convert_quote_to_sales_order)
register_action("ConvertSalesOrderToInvoice", convert_sales_order_to_invoice)
