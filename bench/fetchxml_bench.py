"""FetchXML paging throughput: prints rates and ratios, never asserts.

    .venv/bin/python bench/fetchxml_bench.py [--rows 100000] [--page 5000]

Loads `--rows` accounts into an emulator, then reads them all, ordered by name, three ways:

1. FetchXML with the paging cookie (`count`/`page`/`paging-cookie`, §4.3): each page is a keyset
   range scan after the previous page's last row;
2. FetchXML with page numbers only (no cookie): each page is an OFFSET, so later pages cost more;
3. OData server-driven paging (`Prefer: odata.maxpagesize`, following `@odata.nextLink`).

Over HTTPS when the emulator routes `?fetchXml=` to emulator/fetchxml.py; otherwise both sides run
in-process (FetchXML through `execute_fetch`, OData through `app.state.dispatch`), which the output
says. The ratio that matters is (1) against (3).
"""

from __future__ import annotations

import argparse
import re
import time
import uuid
from urllib.parse import unquote
from xml.etree import ElementTree

import httpx

from d365_components.emulator import defaults
from d365_components.emulator.records.fetchxml import execute_fetch
from d365_components.emulator.server import Emulator
from d365_components.emulator.storage.store import utc_now

ANNOTATIONS = "Microsoft.Dynamics.CRM.fetchxmlpagingcookie,Microsoft.Dynamics.CRM.morerecords"
FETCH = ('<fetch><entity name="account"><attribute name="name"/><attribute name="numberofemployees"/>'
         '<order attribute="name"/></entity></fetch>')


def load(emulator: Emulator, rows: int) -> float:
    """`rows` accounts straight into the store's SQLite table; returns seconds taken."""
    started = time.perf_counter()
    store = emulator.app.state.store
    now, user = utc_now(), defaults.APP_USER_ID
    sql = ('INSERT INTO "account" (accountid, name, numberofemployees, statecode, statuscode, createdon, modifiedon, '
           "createdby, modifiedby, ownerid, owneridtype, versionnumber) "
           "VALUES (?, ?, ?, 0, 1, ?, ?, ?, ?, ?, 'systemuser', ?)")
    with store.transaction():
        store.conn.executemany(sql, [(str(uuid.uuid4()), f"Account {i:07d}", i % 5000, now, now, user, user, user, 10 + i)
                                     for i in range(rows)])
    return time.perf_counter() - started


class Api:
    """GET with JSON answers, over HTTPS or through the app in-process."""

    def __init__(self, emulator: Emulator, https: bool):
        self.emulator, self.https = emulator, https
        self.client = httpx.Client(base_url=emulator.api_url + "/", verify=emulator.ssl_context, timeout=120,
                                   headers={"Authorization": f"Bearer {emulator.get_token()}", "Accept": "application/json"})
        self.caller = {"oid": defaults.APP_USER_OBJECT_ID, "appid": defaults.CLIENT_ID}

    def odata(self, url: str, prefer: str) -> dict:
        if self.https:
            response = self.client.get(url, headers={"Prefer": prefer})
            response.raise_for_status()
            return response.json()
        import json
        full = url if url.startswith("http") else f"{self.emulator.api_url}/{url}"
        status, _, body = self.emulator.app.state.dispatch("GET", full, {"Prefer": prefer}, b"", caller=self.caller)
        assert status == 200, body[:300]
        return json.loads(body)

    def fetch(self, xml: str) -> dict:
        if self.https:
            response = self.client.get("accounts", params={"fetchXml": xml},
                                       headers={"Prefer": f'odata.include-annotations="{ANNOTATIONS}"'})
            response.raise_for_status()
            return response.json()
        status, _, body = execute_fetch(self.emulator.app.state.store, "accounts", xml, annotations=ANNOTATIONS)
        assert status == 200, body
        return body


def routed(api: Api) -> bool:
    """Only the FetchXML handler refuses an unknown entity; plain OData would ignore `fetchXml`."""
    response = api.client.get("accounts", params={"fetchXml": '<fetch><entity name="no_such_table"/></fetch>'})
    return response.status_code == 400


def fetch_pages(api: Api, page_size: int, use_cookie: bool) -> tuple[int, int, float]:
    started = time.perf_counter()
    rows = pages = 0
    cookie = None
    for page in range(1, 10_000):
        root = ElementTree.fromstring(FETCH)
        root.set("count", str(page_size))
        root.set("page", str(page))
        if use_cookie and cookie:
            root.set("paging-cookie", cookie)
        body = api.fetch(ElementTree.tostring(root, encoding="unicode"))
        rows += len(body["value"])
        pages += 1
        if not body.get("@Microsoft.Dynamics.CRM.morerecords"):
            break
        annotation = body["@Microsoft.Dynamics.CRM.fetchxmlpagingcookie"]
        cookie = unquote(unquote(re.search(r'pagingcookie="([^"]*)"', annotation).group(1)))
    return rows, pages, time.perf_counter() - started


def odata_pages(api: Api, page_size: int) -> tuple[int, int, float]:
    started = time.perf_counter()
    rows = pages = 0
    url = "accounts?$select=name,numberofemployees&$orderby=name"
    while url:
        body = api.odata(url, f"odata.maxpagesize={page_size}")
        rows += len(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
    return rows, pages, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=5000)
    args = parser.parse_args()
    with Emulator(seed=None) as emulator:
        print(f"loaded {args.rows:,} accounts in {load(emulator, args.rows):.1f} s")
        api = Api(emulator, https=False)
        api.https = routed(api)
        print("transport:", "HTTPS" if api.https else
              "in-process (the app does not route ?fetchXml= yet; both sides measured without HTTP)")
        results = {}
        for label, run in (("FetchXML + paging cookie (keyset)", lambda: fetch_pages(api, args.page, True)),
                           ("FetchXML, page numbers only (OFFSET)", lambda: fetch_pages(api, args.page, False)),
                           ("OData maxpagesize + nextLink", lambda: odata_pages(api, args.page))):
            rows, pages, seconds = run()
            results[label] = rows / seconds
            print(f"{label:40s} {rows:>9,} rows  {pages:>4} pages  {seconds:6.2f} s  {rows / seconds:>10,.0f} rows/s")
        cookie, offset, odata = results.values()
        print(f"ratio FetchXML cookie / OData:          {cookie / odata:.2f}x")
        print(f"ratio FetchXML cookie / FetchXML OFFSET: {cookie / offset:.2f}x")
        api.client.close()


if __name__ == "__main__":
    main()
