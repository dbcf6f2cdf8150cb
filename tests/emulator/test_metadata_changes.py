"""Schema changes over real HTTPS: CreateEntities, deleting tables, columns and relationships,
alternate keys and their index job, RetrieveMetadataChanges with version stamps."""

from __future__ import annotations

import asyncio
import json

STRING = "Microsoft.Dynamics.CRM.StringAttributeMetadata"


def error_of(response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def label(text: str) -> dict:
    return {"LocalizedLabels": [{"Label": text, "LanguageCode": 1033}]}


def string_column(schema_name: str, primary: bool = False) -> dict:
    return {"@odata.type": STRING, "SchemaName": schema_name, "MaxLength": 100, "IsPrimaryName": primary,
            "DisplayName": label(schema_name), "RequiredLevel": {"Value": "None"}}


async def add_column(api, table: str, schema_name: str) -> str:
    response = await api.post(f"EntityDefinitions(LogicalName='{table}')/Attributes", json=string_column(schema_name))
    assert response.status_code == 204, response.text
    return schema_name.lower()


async def metadata_changes(api, query: dict, stamp: str | None = None):
    args = "Query=@p1" + (",ClientVersionStamp=@p2" if stamp else "")
    params = {"@p1": json.dumps(query)} | ({"@p2": f"'{stamp}'"} if stamp else {})
    return await api.get(f"RetrieveMetadataChanges({args})", params=params)


def on_table(name: str) -> dict:
    return {"Conditions": [{"PropertyName": "LogicalName", "ConditionOperator": "Equals",
                            "Value": {"Type": "System.String", "Value": name}}]}


async def test_create_entities_with_columns_then_delete_the_table(api, unique):
    name = f"new_gadget{unique}"
    response = await api.post("CreateEntities", json={"Entities": [{
        "@odata.type": "Microsoft.Dynamics.CRM.ComplexEntityMetadata", "SchemaName": f"new_Gadget{unique}",
        "DisplayName": label("Gadget"), "DisplayCollectionName": label("Gadgets"), "OwnershipType": "UserOwned",
        "HasActivities": False, "HasNotes": False, "IsActivity": False,
        "Attributes": [{**string_column("new_Name", primary=True), "@odata.type": "Microsoft.Dynamics.CRM.ComplexStringAttributeMetadata"},
                       {"@odata.type": "Microsoft.Dynamics.CRM.ComplexIntegerAttributeMetadata", "SchemaName": "new_Qty",
                        "DisplayName": label("Qty"), "RequiredLevel": {"Value": "None"}}]}]})
    assert response.status_code == 200, response.text
    table_id = response.json()["EntityIds"][0]
    created = await api.post(f"{name}s", json={"new_name": "g", "new_qty": 3}, headers={"Prefer": "return=representation"})
    assert created.json()["new_qty"] == 3

    assert (await api.delete(f"EntityDefinitions({table_id})")).status_code == 204
    assert error_of(await api.get(f"EntityDefinitions(LogicalName='{name}')"))[0] == 404
    assert (await api.get(f"{name}s")).status_code == 404
    assert error_of(await api.delete("EntityDefinitions(LogicalName='account')"))[:2] == (400, "0x8004023b")


async def test_delete_a_column_and_refuse_system_columns(api, unique):
    column = await add_column(api, "lead", f"new_Doomed{unique}")
    attrs = (await api.get(f"EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='{column}')")).json()
    deleted = await api.delete(f"EntityDefinitions(LogicalName='lead')/Attributes({attrs['MetadataId']})",
                               headers={"If-Match": "*"})
    assert deleted.status_code == 204
    assert error_of(await api.get(f"EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='{column}')"))[0] == 404
    assert (await api.get(f"leads?$select={column}")).status_code == 400
    assert (await api.post("leads", json={"lastname": "after the drop"})).status_code == 204
    refused = await api.delete("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='lastname')")
    assert error_of(refused)[:2] == (400, "0x8004023b")


async def test_delete_relationships_takes_the_lookup_and_refuses_system_ones(api, unique):
    schema_name = f"new_account_task_{unique}"
    assert (await api.post("RelationshipDefinitions", json={
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata", "SchemaName": schema_name,
        "ReferencedEntity": "account", "ReferencingEntity": "task",
        "Lookup": {"SchemaName": f"new_Owner{unique}", "DisplayName": label("Owner")}})).status_code == 204
    rel = (await api.get(f"RelationshipDefinitions(SchemaName='{schema_name}')")).json()
    assert (await api.delete(f"RelationshipDefinitions({rel['MetadataId']})", headers={"If-Match": "*"})).status_code == 204
    assert error_of(await api.get(f"RelationshipDefinitions(SchemaName='{schema_name}')"))[0] == 404
    lookup = await api.get(f"EntityDefinitions(LogicalName='task')/Attributes(LogicalName='new_owner{unique}')")
    assert lookup.status_code == 404
    system = (await api.get("RelationshipDefinitions(SchemaName='account_primary_contact')")).json()
    assert error_of(await api.delete(f"RelationshipDefinitions({system['MetadataId']})"))[:2] == (400, "0x8004023b")


async def key_status(api, table: str, key: str) -> str:
    keys = (await api.get(f"EntityDefinitions(LogicalName='{table}')/Keys")).json()["value"]
    return next(k["EntityKeyIndexStatus"] for k in keys if k["SchemaName"] == key)


async def wait_for_key(api, table: str, key: str) -> str:
    for _ in range(100):
        status = await key_status(api, table, key)
        if status in ("Active", "Failed"):
            return status
        await asyncio.sleep(0.05)
    return status


async def test_alternate_key_is_pending_until_its_index_job_makes_it_active(api, unique):
    column = await add_column(api, "contact", f"new_Badge{unique}")
    key = f"new_badge{unique}_key"
    created = await api.post("EntityDefinitions(LogicalName='contact')/Keys", json={
        "SchemaName": key, "KeyAttributes": [column], "DisplayName": label("Badge")})
    assert created.status_code == 204
    key_id = created.headers["OData-EntityId"].rsplit("Keys(", 1)[1].rstrip(")")
    early = await api.patch(f"contacts({column}='b-1')", json={"lastname": "early"})
    assert early.status_code == 400 and "not active" in early.json()["error"]["message"]

    assert await wait_for_key(api, "contact", key) == "Active"
    assert (await api.patch(f"contacts({column}='b-1')", json={"lastname": "upserted"})).status_code == 204
    assert (await api.get(f"contacts({column}='b-1')?$select=lastname")).json()["lastname"] == "upserted"
    one = (await api.get(f"EntityDefinitions(LogicalName='contact')/Keys({key_id})")).json()
    assert one["KeyAttributes"] == [column]
    job = (await api.get(f"asyncoperations({one['AsyncJob']['Id']})?$select=statecode,statuscode")).json()
    assert (job["statecode"], job["statuscode"]) == (3, 30)

    assert (await api.delete(f"EntityDefinitions(LogicalName='contact')/Keys({key_id})")).status_code == 204
    assert key not in {k["SchemaName"] for k in
                       (await api.get("EntityDefinitions(LogicalName='contact')/Keys")).json()["value"]}
    assert (await api.get(f"contacts({column}='b-1')")).status_code == 400


async def test_a_key_over_duplicate_values_fails(api, unique):
    column = await add_column(api, "contact", f"new_Twin{unique}")
    for _ in range(2):
        assert (await api.post("contacts", json={"lastname": "twin", column: "same"})).status_code == 204
    key = f"new_twin{unique}_key"
    assert (await api.post("EntityDefinitions(LogicalName='contact')/Keys", json={
        "SchemaName": key, "KeyAttributes": [column]})).status_code == 204
    assert await wait_for_key(api, "contact", key) == "Failed"


async def test_retrieve_metadata_changes_with_version_stamps(api, unique):
    query = {"Criteria": on_table("opportunity"), "Properties": {"PropertyNames": ["LogicalName", "Attributes"]},
             "AttributeQuery": {"Properties": {"PropertyNames": ["LogicalName", "MaxLength"]},
                                "Criteria": on_table("name")}}
    first = await metadata_changes(api, query)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["@odata.context"].endswith("#Microsoft.Dynamics.CRM.RetrieveMetadataChangesResponse")
    (entity,) = body["EntityMetadata"]
    assert entity["LogicalName"] == "opportunity" and "SchemaName" not in entity
    (name,) = entity["Attributes"]
    assert (name["LogicalName"], name["@odata.type"]) == ("name", "#Microsoft.Dynamics.CRM.StringAttributeMetadata")
    stamp = body["ServerVersionStamp"]

    unchanged = (await metadata_changes(api, query, stamp)).json()
    assert unchanged["EntityMetadata"] == []

    column = await add_column(api, "opportunity", f"new_Gone{unique}")
    attribute = (await api.get(f"EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='{column}')")).json()
    assert (await api.delete(f"EntityDefinitions(LogicalName='opportunity')/Attributes({attribute['MetadataId']})",
                             headers={"If-Match": "*"})).status_code == 204
    changed = (await metadata_changes(api, {**query, "AttributeQuery": {}}, stamp)).json()
    assert [e["LogicalName"] for e in changed["EntityMetadata"]] == ["opportunity"]
    deleted = dict(zip(changed["DeletedMetadata"]["Keys"], changed["DeletedMetadata"]["Values"], strict=True))
    assert attribute["MetadataId"] in deleted["Attribute"]

    expired = await metadata_changes(api, query, "1!01/01/2020 00:00:00")
    assert error_of(expired)[:2] == (400, "0x80044352")
    unsupported = await metadata_changes(api, {"Criteria": {"Conditions": [{"PropertyName": "LogicalName",
                                                            "ConditionOperator": "GreaterThan", "Value": 1}]}})
    assert unsupported.status_code == 400
