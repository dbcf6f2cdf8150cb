"""The kit users get for their own suites, used exactly as they would: the pytest fixtures,
``emulated_org()`` without pytest, and the conformance suite for plugins' definitions."""

from __future__ import annotations

import subprocess
import sys

import d365_test_acme
import pytest

from d365_components.testing import DefinitionChecks, definition_test_class


def test_fixtures_reach_a_running_org(dataverse_emulator, dataverse_connection, run_action) -> None:
    assert dataverse_connection["inputs"]["webApiUrl"] == dataverse_emulator.emulator.org_url
    created = run_action("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": "Kit Co"}})
    row = run_action("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"]})
    assert row["id"] == created["id"] and row["record"]["name"] == "Kit Co"


def test_emulated_org_works_without_pytest() -> None:
    script = (
        "import sys\n"
        "sys.modules['pytest'] = None  # as if pytest were not installed\n"
        "from d365_components.runtime import invoke_sync, open_connection, run_sync\n"
        "from d365_components.testing import emulated_org\n"
        "with emulated_org(seed='demo') as org:\n"
        "    connection = open_connection(org.connection)\n"
        "    rows = invoke_sync('dynamics365.query_entities', {'entityType': 'accounts'}, connection)\n"
        "    run_sync(connection.aclose())\n"
        "print(len(rows['value']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0 and result.stderr == ""  # stopping logs nothing


# The conformance suite, run here as a plugin author runs it: on our component, and on a plugin
# module that is not installed.
TestDynamics365Definitions = definition_test_class("dynamics365")
TestAcmeDefinitions = definition_test_class("acme", plugins=[d365_test_acme])


def test_conformance_names_the_failing_definition() -> None:
    class NoExample(d365_test_acme.Echo):
        """Echo without an example output."""

        key = "acme.no_example"
        example = None

    with pytest.raises(AssertionError, match="acme.no_example has no example output"):
        DefinitionChecks().test_output_schema_and_example(NoExample)
    with pytest.raises(LookupError, match="No definition of component 'nobody'"):
        definition_test_class("nobody")
