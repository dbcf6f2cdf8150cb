"""Get Current User against the emulator: WhoAmI plus the caller's systemuser row."""

from __future__ import annotations

from d365_components.emulator import defaults


async def test_current_user_is_the_application_user(run):
    me = await run("dynamics365.get_current_user")
    assert me["userId"] == defaults.APP_USER_ID
    assert me["businessUnitId"] == defaults.BUSINESS_UNIT_ID
    assert me["organizationId"] == defaults.ORGANIZATION_ID
    assert me["fullName"] == "# emulator-app"
    assert me["domainName"] == f"{defaults.CLIENT_ID}@emulator.test"
    assert me["businessUnitName"] == defaults.ORGANIZATION_NAME
    assert me["user"]["systemuserid"] == defaults.APP_USER_ID


async def test_extra_columns_come_back_in_user(run):
    me = await run("dynamics365.get_current_user", {"fieldNames": ["azureactivedirectoryobjectid", "accessmode"]})
    assert me["user"]["azureactivedirectoryobjectid"] == defaults.APP_USER_OBJECT_ID
    assert me["user"]["accessmode"] == 4
