"""Quote to cash against the emulator: priced lines, totals, win/close, quote -> order -> invoice."""

from __future__ import annotations

import uuid

import pytest

from d365_components.emulator.defaults import USD_ID
from d365_components.errors import DataverseError


def created_id(response) -> str:
    assert response.status_code == 204, response.text
    return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


@pytest.fixture
async def catalogue(api) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    price_list = created_id(await api.post("pricelevels", json={
        "name": f"Retail {tag}", "transactioncurrencyid@odata.bind": f"/transactioncurrencies({USD_ID})"}))
    ids = {"priceList": price_list, "account": created_id(await api.post("accounts", json={"name": f"Buyer {tag}"}))}
    for name, amount in (("laptop", 1000), ("dock", 150)):
        ids[name] = created_id(await api.post("products", json={"name": f"{name} {tag}", "productnumber": f"{name}-{tag}"}))
        created_id(await api.post("productpricelevels", json={
            "amount": amount, "pricelevelid@odata.bind": f"/pricelevels({price_list})", "productid@odata.bind": f"/products({ids[name]})"}))
    return ids


async def test_quote_to_cash(run, api, catalogue):
    quote = await run("dynamics365.create_quote", {
        "name": "Laptops", "customerId": catalogue["account"], "priceListId": catalogue["priceList"], "activate": True,
        "discountPercentage": 10, "freightAmount": 20,
        "lines": [{"productId": catalogue["laptop"], "quantity": 2, "manualDiscountAmount": 100, "tax": 50},
                  {"productId": catalogue["dock"], "quantity": 3, "pricePerUnit": 120}]})
    lines = (await api.get(f"quotedetails?$filter=_quoteid_value eq {quote['quoteId']}&$orderby=lineitemnumber"
                           "&$select=priceperunit,baseamount,extendedamount")).json()["value"]
    assert [(r["priceperunit"], r["baseamount"], r["extendedamount"]) for r in lines] == [(1000, 2000, 1950), (120, 360, 360)]
    assert quote["totals"] == {"totallineitemamount": 2260.0, "totallineitemdiscountamount": 100.0, "totaldiscountamount": 226.0,
                               "totaltax": 50.0, "freightamount": 20.0, "totalamountlessfreight": 2034.0, "totalamount": 2104.0}
    await api.patch(f"quotedetails({lines[1]['quotedetailid']})", json={"quantity": 4})        # totals follow a line change
    header = (await api.get(f"quotes({quote['quoteId']})?$select=totallineitemamount,totalamount")).json()
    assert (header["totallineitemamount"], header["totalamount"]) == (2380, 2212)

    order = await run("dynamics365.convert_quote_to_order", {"quoteId": quote["quoteId"]})
    assert order["totals"]["totalamount"] == 2212.0
    won = (await api.get(f"quotes({quote['quoteId']})?$select=statecode,statuscode")).json()
    assert (won["statecode"], won["statuscode"]) == (2, 4)
    invoice = await run("dynamics365.convert_order_to_invoice", {"orderId": order["orderId"]})
    assert invoice["totals"] == order["totals"]
    invoiced = (await api.get(f"salesorders({order['orderId']})?$select=statecode")).json()
    assert invoiced["statecode"] == 4
    invoice_lines = (await api.get(f"invoicedetails?$filter=_invoiceid_value eq {invoice['invoiceId']}")).json()["value"]
    assert sorted(r["extendedamount"] for r in invoice_lines) == [480, 1950]
    with pytest.raises(DataverseError):
        await run("dynamics365.convert_order_to_invoice", {"orderId": order["orderId"]})


async def test_win_and_close_quotes(run, catalogue):
    lines = [{"productId": catalogue["dock"], "quantity": 1}]
    draft = await run("dynamics365.create_quote", {"name": "Draft", "customerId": catalogue["account"],
                                                   "priceListId": catalogue["priceList"], "lines": lines})
    assert draft["totals"]["totalamount"] == 150.0
    with pytest.raises(DataverseError):                       # a draft quote cannot be won
        await run("dynamics365.win_quote", {"quoteId": draft["quoteId"]})
    closed = await run("dynamics365.close_quote", {"quoteId": draft["quoteId"], "status": 6})
    assert (closed["statecode"], closed["statuscode"]) == (3, 6)
    active = await run("dynamics365.create_quote", {"name": "Active", "customerId": catalogue["account"],
                                                    "priceListId": catalogue["priceList"], "lines": lines, "activate": True})
    won = await run("dynamics365.win_quote", {"quoteId": active["quoteId"]})
    assert (won["statecode"], won["statuscode"]) == (2, 4)
