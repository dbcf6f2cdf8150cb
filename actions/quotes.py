"""Quote to cash: create a quote with product lines from a price list, win or close it, convert it
to an order and the order to an invoice.

Dataverse prices the lines itself: a line without an overridden price takes the price list's
amount for its product (productpricelevel), and the header's totals follow every line
(totallineitemamount, totaldiscountamount, totaltax, totalamount). Create Quote sends the header
and one quotedetail per line (a given price is sent as overridden) and returns the totals
Dataverse computed. Win / Close Quote send WinQuote / CloseQuote with their quoteclose activity; the
conversions send ConvertQuoteToSalesOrder and ConvertSalesOrderToInvoice.
"""

from __future__ import annotations

from typing import Any, Literal

from d365_components import Action, Context, InputField, InputModel
from d365_components.actions._common import EXAMPLE_ID, GUID_PATTERN, plain_id, record_id_field

__all__ = ["CloseQuote", "ConvertOrderToInvoice", "ConvertQuoteToOrder", "CreateQuote", "WinQuote"]

TOTALS = ("totallineitemamount", "totallineitemdiscountamount", "totaldiscountamount", "totaltax", "freightamount",
          "totalamountlessfreight", "totalamount")
_TOTALS_SCHEMA = {
    "type": "object", "required": list(TOTALS), "description": "The totals Dataverse computed.",
    "properties": {name: {"type": ["number", "null"], "description": f"{name} of the header."} for name in TOTALS},
}
_TOTALS_EXAMPLE = {"totallineitemamount": 1000.0, "totallineitemdiscountamount": 0.0, "totaldiscountamount": 50.0, "totaltax": 80.0,
                   "freightamount": 20.0, "totalamountlessfreight": 950.0, "totalamount": 1050.0}


class QuoteLine(InputModel):
    """One product line of a quote."""

    product_id: str = record_id_field("Product", "products", "The GUID of the product.")
    quantity: float = InputField(1, title="Quantity", description="How many.", examples=[2], gt=0)
    price_per_unit: float | None = InputField(None, title="Price per unit", description="Overrides the price list's price; from the price list when empty.",
                                              examples=[450.0], ge=0)
    manual_discount_amount: float | None = InputField(None, title="Discount", description="A discount amount on this line.", examples=[25.0], ge=0)
    tax: float | None = InputField(None, title="Tax", description="The tax amount of this line.", examples=[40.0], ge=0)
    unit_id: str | None = InputField(None, title="Unit", description="The GUID of the unit of measure (uom), as Dataverse asks for catalogue products; not sent when empty.",
                                     examples=[EXAMPLE_ID], pattern=GUID_PATTERN)


async def _totals(ctx: Context, entity_set: str, row_id: str) -> dict[str, Any]:
    row = await ctx.web_api.retrieve(entity_set, row_id, select=list(TOTALS))
    return {name: row.get(name) for name in TOTALS}


class CreateQuote(Action):
    """Create a quote with product lines priced from a price list; returns its id and the totals Dataverse computed."""

    key = "dynamics365.create_quote"
    label = "Create Quote"
    group = "Sales"

    class Inputs(InputModel):
        name: str = InputField(title="Name", description="The quote's name.", examples=["Contoso - 10 licences"], min_length=1, max_length=300)
        customer_type: Literal["accounts", "contacts"] = InputField(
            "accounts", title="Customer type", description="Whether the customer is an account or a contact.", examples=["accounts"],
            enum_labels={"accounts": "Account", "contacts": "Contact"})
        customer_id: str = InputField(title="Customer", description="The GUID of the customer (account or contact).", examples=[EXAMPLE_ID], pattern=GUID_PATTERN,
                                      schema={"x-data-source": "dynamics365.records", "x-data-source-inputs": {"table": "customerType"}})
        price_list_id: str = record_id_field("Price list", "pricelevels", "The GUID of the price list the lines are priced from.")
        currency_id: str | None = record_id_field("Currency", "transactioncurrencies", "The GUID of the currency; the price list's when empty.", None)
        opportunity_id: str | None = record_id_field("Opportunity ID", "opportunities", "The GUID of the opportunity the quote answers (optional).", None)
        lines: list[QuoteLine] = InputField(title="Lines", description="The product lines.", min_length=1, max_length=200,
                                            examples=[[{"productId": EXAMPLE_ID, "quantity": 2}]])
        discount_amount: float | None = InputField(None, title="Quote discount", description="A discount amount on the whole quote.", examples=[50.0], ge=0)
        discount_percentage: float | None = InputField(None, title="Quote discount %", description="A discount percentage on the whole quote.",
                                                       examples=[5.0], ge=0, le=100)
        freight_amount: float | None = InputField(None, title="Freight", description="The freight amount.", examples=[20.0], ge=0)
        activate: bool = InputField(False, title="Activate", description="Activate the quote (statecode Active) so it can be won or converted.")

    output_schema = {"type": "object", "required": ["quoteId", "lineIds", "totals"],
                     "properties": {"quoteId": {"type": "string", "description": "The new quote."},
                                    "lineIds": {"type": "array", "items": {"type": "string"}, "description": "Its quotedetail rows, in order."},
                                    "totals": _TOTALS_SCHEMA}}
    example = {"quoteId": EXAMPLE_ID, "lineIds": ["5aae8258-4878-eb11-a812-000d3a8b3ec6"], "totals": _TOTALS_EXAMPLE}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        price_list = plain_id(inputs.price_list_id)
        currency = inputs.currency_id or (await ctx.web_api.retrieve("pricelevels", price_list,
                                                                     select=["_transactioncurrencyid_value"])).get("_transactioncurrencyid_value")
        header: dict[str, Any] = {"name": inputs.name, f"customerid_{inputs.customer_type[:-1]}@odata.bind": f"/{inputs.customer_type}({plain_id(inputs.customer_id)})",
                                  "pricelevelid@odata.bind": f"/pricelevels({price_list})"}
        if currency:
            header["transactioncurrencyid@odata.bind"] = f"/transactioncurrencies({plain_id(currency)})"
        if inputs.opportunity_id:
            header["opportunityid@odata.bind"] = f"/opportunities({plain_id(inputs.opportunity_id)})"
        for key, value in (("discountamount", inputs.discount_amount), ("discountpercentage", inputs.discount_percentage),
                           ("freightamount", inputs.freight_amount)):
            if value is not None:
                header[key] = value
        quote_id = str((await ctx.web_api.create("quotes", header))["id"])
        line_ids = []
        for number, line in enumerate(inputs.lines, start=1):
            body: dict[str, Any] = {"quoteid@odata.bind": f"/quotes({quote_id})", "productid@odata.bind": f"/products({plain_id(line.product_id)})",
                                    "quantity": line.quantity, "lineitemnumber": number, "ispriceoverridden": line.price_per_unit is not None}
            if line.price_per_unit is not None:
                body["priceperunit"] = line.price_per_unit
            if line.manual_discount_amount is not None:
                body["manualdiscountamount"] = line.manual_discount_amount
            if line.tax is not None:
                body["tax"] = line.tax
            if line.unit_id:
                body["uomid@odata.bind"] = f"/uoms({plain_id(line.unit_id)})"
            line_ids.append(str((await ctx.web_api.create("quotedetails", body))["id"]))
        if inputs.activate:
            await ctx.web_api.update("quotes", quote_id, {"statecode": 1, "statuscode": 2})
        return {"quoteId": quote_id, "lineIds": line_ids, "totals": await _totals(ctx, "quotes", quote_id)}


def _quote_id() -> Any:
    return record_id_field("Quote ID", "quotes", "The GUID of the quote.")


_STATE_OUTPUT = {"type": "object", "required": ["quoteId", "statecode", "statuscode"],
                 "properties": {"quoteId": {"type": "string", "description": "The quote."},
                                "statecode": {"type": "integer", "description": "2 Won, 3 Closed."},
                                "statuscode": {"type": "integer", "description": "The status reason set."}}}


async def _close(ctx: Context, message: str, quote_id: str, status: int, subject: str) -> dict[str, Any]:
    quote = plain_id(quote_id)
    await ctx.web_api.execute(message, {"Status": status, "QuoteClose": {"subject": subject, "quoteid@odata.bind": f"/quotes({quote})"}})
    row = await ctx.web_api.retrieve("quotes", quote, select=["statecode", "statuscode"])
    return {"quoteId": quote, "statecode": row.get("statecode"), "statuscode": row.get("statuscode")}


class WinQuote(Action):
    """Close an active quote as won."""

    key = "dynamics365.win_quote"
    label = "Win Quote"
    group = "Sales"

    class Inputs(InputModel):
        quote_id: str = _quote_id()
        subject: str = InputField("Quote won", title="Subject", description="Subject of the quote close record.", examples=["Quote won"], max_length=200)

    output_schema = _STATE_OUTPUT
    example = {"quoteId": EXAMPLE_ID, "statecode": 2, "statuscode": 4}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return await _close(ctx, "WinQuote", inputs.quote_id, 4, inputs.subject)


class CloseQuote(Action):
    """Close a quote as lost, canceled or revised."""

    key = "dynamics365.close_quote"
    label = "Close Quote"
    group = "Sales"

    class Inputs(InputModel):
        quote_id: str = _quote_id()
        status: Literal[5, 6, 7] = InputField(5, title="Status reason", description="5 = Lost, 6 = Canceled, 7 = Revised.", examples=[5],
                                              enum_labels={5: "Lost", 6: "Canceled", 7: "Revised"})
        subject: str = InputField("Quote closed", title="Subject", description="Subject of the quote close record.", examples=["Quote closed"],
                                  max_length=200)

    output_schema = _STATE_OUTPUT
    example = {"quoteId": EXAMPLE_ID, "statecode": 3, "statuscode": 5}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return await _close(ctx, "CloseQuote", inputs.quote_id, inputs.status, inputs.subject)


class ConvertQuoteToOrder(Action):
    """Turn an active or won quote into an order (the quote is won), lines and prices as quoted."""

    key = "dynamics365.convert_quote_to_order"
    label = "Convert Quote To Order"
    group = "Sales"

    class Inputs(InputModel):
        quote_id: str = _quote_id()

    output_schema = {"type": "object", "required": ["orderId", "quoteId", "totals"],
                     "properties": {"orderId": {"type": "string", "description": "The new order."},
                                    "quoteId": {"type": "string", "description": "The quote it came from."}, "totals": _TOTALS_SCHEMA}}
    example = {"orderId": "5aae8258-4878-eb11-a812-000d3a8b3ec6", "quoteId": EXAMPLE_ID, "totals": _TOTALS_EXAMPLE}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        quote = plain_id(inputs.quote_id)
        order = await ctx.web_api.execute("ConvertQuoteToSalesOrder", {"QuoteId": quote, "ColumnSet": {"AllColumns": True}}) or {}
        order_id = str(order["salesorderid"])
        return {"orderId": order_id, "quoteId": quote, "totals": await _totals(ctx, "salesorders", order_id)}


class ConvertOrderToInvoice(Action):
    """Turn an order into an invoice (the order becomes Invoiced)."""

    key = "dynamics365.convert_order_to_invoice"
    label = "Convert Order To Invoice"
    group = "Sales"

    class Inputs(InputModel):
        order_id: str = record_id_field("Order ID", "salesorders", "The GUID of the order.")

    output_schema = {"type": "object", "required": ["invoiceId", "orderId", "totals"],
                     "properties": {"invoiceId": {"type": "string", "description": "The new invoice."},
                                    "orderId": {"type": "string", "description": "The order it came from."}, "totals": _TOTALS_SCHEMA}}
    example = {"invoiceId": "5aae8258-4878-eb11-a812-000d3a8b3ec6", "orderId": EXAMPLE_ID, "totals": _TOTALS_EXAMPLE}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        order = plain_id(inputs.order_id)
        invoice = await ctx.web_api.execute("ConvertSalesOrderToInvoice", {"SalesOrderId": order, "ColumnSet": {"AllColumns": True}}) or {}
        invoice_id = str(invoice["invoiceid"])
        return {"invoiceId": invoice_id, "orderId": order, "totals": await _totals(ctx, "invoices", invoice_id)}
