"""Inputs that cannot become a request end as library input errors naming the field, never as
httpx, ValueError or RecursionError escaping an action (issue 13)."""

from __future__ import annotations

import pytest

from d365_components.errors import InputValidationError
from d365_components.runtime import invoke

DEEP = "<fetch><entity name='account'>" + "<filter>" * 50_000 + "</filter>" * 50_000 + "</entity></fetch>"
DEEP_SMALL = "<fetch><entity name='account'>" + "<a>" * 8_000 + "</a>" * 8_000 + "</entity></fetch>"
LONG = "<fetch><entity name='account'><filter type='or'>" + "<condition attribute='name' operator='eq' value='x'/>" * 2_000 + "</filter></entity></fetch>"
INTERNAL_DTD = "<!DOCTYPE fetch [<!ELEMENT fetch ANY>]><fetch><entity name='account'/></fetch>"
EXTERNAL_DTD = "<!DOCTYPE fetch SYSTEM 'http://127.0.0.1:9/x.dtd'><fetch><entity name='account'/></fetch>"


@pytest.mark.parametrize(("key", "inputs", "pointer", "says"), [
    ("dynamics365.raw_request", {"method": "GET", "url": "\u0006x"}, "/url", "control characters"),
    ("dynamics365.raw_request", {"method": "GET", "url": "https://[::1/x"}, "/url", ""),
    ("dynamics365.list_entity_types", {"nextLink": "https://x/api/data/v9.2/\u0001y"}, "/nextLink", "control characters"),
    ("dynamics365.list_entity_types", {"nextLink": "https://elsewhere.example/api/data/v9.2/x"}, "/nextLink", "another host"),
    ("dynamics365.get_entity", {"entityType": "accounts", "alternateKey": {"name\n": "x"}}, "/alternateKey", "column name"),
    ("dynamics365.run_fetch_xml_query", {"xmlQuery": DEEP}, "/xmlQuery", "at most"),
    ("dynamics365.run_fetch_xml_query", {"xmlQuery": DEEP_SMALL}, "/xmlQuery", "levels"),
    ("dynamics365.run_fetch_xml_query", {"xmlQuery": LONG}, "/xmlQuery", "65,536"),
    ("dynamics365.run_fetch_xml_query", {"xmlQuery": INTERNAL_DTD}, "/xmlQuery", "DTD"),
    ("dynamics365.run_fetch_xml_query", {"xmlQuery": EXTERNAL_DTD}, "/xmlQuery", "DTD"),
])
async def test_an_input_that_cannot_be_sent_is_an_input_error(connection, key, inputs, pointer, says):
    with pytest.raises(InputValidationError) as caught:
        await invoke(key, inputs, connection)
    assert [e.pointer for e in caught.value.errors] == [pointer]
    assert says in caught.value.errors[0].message


async def test_a_link_on_the_org_but_outside_the_web_api_is_refused(connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.list_entity_types", {"nextLink": connection.open_client().org_url + "/other"}, connection)
    assert caught.value.errors[0].pointer == "/nextLink"


async def test_a_header_value_with_a_line_break_is_an_input_error(connection):
    with pytest.raises(InputValidationError) as caught:
        await invoke("dynamics365.raw_request", {"method": "GET", "url": "WhoAmI",
                                                 "headers": [{"key": "X-Test", "value": "a\r\nInjected: 1"}]}, connection)
    assert caught.value.errors[0].pointer.startswith("/headers")
