"""The client-credentials connection as Prismatic's is filled in: a Token URL and no tenant."""

from __future__ import annotations

import pytest

from d365_components.connections.oauth import CertificateConnection, ClientCredentialsConnection
from d365_components.emulator import defaults
from d365_components.errors import ConnectionConfigError, InputValidationError


def _prismatic_inputs(emulator, **overrides):
    """Only what Prismatic's connection asks for (plus the emulator's TLS trust and custom host)."""
    inputs = emulator.connection_inputs(**overrides)
    inputs.pop("tenantId")
    inputs.pop("authorityHost")
    return inputs


async def test_a_token_url_alone_names_the_tenant_and_connects(emulator):
    inputs = _prismatic_inputs(emulator)
    assert inputs["tokenUrl"].endswith(f"/{emulator.tenant_id}/oauth2/v2.0/token")
    connection = ClientCredentialsConnection(inputs)
    try:
        assert connection._tenant() == emulator.tenant_id
        result = await connection.test()
    finally:
        await connection.aclose()
    assert result["organizationId"] == defaults.ORGANIZATION_ID


async def test_the_tenant_alone_still_connects(emulator):
    inputs = emulator.connection_inputs()
    inputs.pop("tokenUrl")
    connection = ClientCredentialsConnection(inputs)
    try:
        assert (await connection.test())["organizationId"] == defaults.ORGANIZATION_ID
    finally:
        await connection.aclose()


def test_neither_tenant_nor_token_url_is_refused_naming_both(emulator):
    inputs = _prismatic_inputs(emulator)
    inputs.pop("tokenUrl")
    with pytest.raises(InputValidationError) as caught:
        ClientCredentialsConnection(inputs)
    pointers = {e.pointer for e in caught.value.errors}
    assert pointers == {"/tenantId", "/tokenUrl"}
    assert "tenantId or tokenUrl" in str(caught.value)


@pytest.mark.parametrize("connection", [ClientCredentialsConnection, CertificateConnection])
def test_the_schema_says_tenant_or_token_url(connection):
    schema = connection.input_schema()
    assert "tenantId" not in schema.get("required", [])
    refused = schema["not"]["anyOf"]
    assert any(set(rule["x-fields"]) == {"tenantId", "tokenUrl"} for rule in refused)
    assert "Token URL" in schema["properties"]["tenantId"]["description"]


def test_a_token_url_that_names_no_tenant_is_refused(emulator):
    inputs = _prismatic_inputs(emulator)
    inputs["tokenUrl"] = inputs["tokenUrl"].replace(f"/{emulator.tenant_id}/", "/")
    with pytest.raises(ConnectionConfigError, match="tokenUrl: .* is not a tenant"):
        ClientCredentialsConnection(inputs)
