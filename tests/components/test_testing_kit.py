"""The pytest plugin users get for their own suites, used exactly as they would."""

from __future__ import annotations


def test_fixtures_reach_a_running_org(dataverse_emulator, dataverse_connection, run_action) -> None:
    assert dataverse_connection["inputs"]["webApiUrl"] == dataverse_emulator.emulator.org_url
    created = run_action("dynamics365.create_entity", {"entityType": "accounts", "dynamicValues": {"name": "Kit Co"}})
    row = run_action("dynamics365.get_entity", {"entityType": "accounts", "entityId": created["id"]})
    assert row["id"] == created["id"] and row["record"]["name"] == "Kit Co"
