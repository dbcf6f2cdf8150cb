"""The metadata API over real HTTPS: tables, columns (casts, option sets, labels), creating and
updating columns, relationships, keys, global option sets."""

from __future__ import annotations

ACCOUNT = "EntityDefinitions(LogicalName='account')"
PICKLIST = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"


def error_of(response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def label(text: str) -> dict:
    return {"@odata.type": "Microsoft.Dynamics.CRM.Label",
            "LocalizedLabels": [{"@odata.type": "Microsoft.Dynamics.CRM.LocalizedLabel", "Label": text, "LanguageCode": 1033}]}


async def test_entity_definition_by_logical_name_and_metadata_id(api):
    response = await api.get(f"{ACCOUNT}?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,"
                             "IsCustomEntity,ObjectTypeCode,ChangeTrackingEnabled,DisplayName")
    body = response.json()
    assert body["@odata.context"].endswith("#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute,"
                                           "PrimaryNameAttribute,IsCustomEntity,ObjectTypeCode,ChangeTrackingEnabled,DisplayName)/$entity")
    assert (body["LogicalName"], body["EntitySetName"], body["PrimaryIdAttribute"], body["PrimaryNameAttribute"]) == (
        "account", "accounts", "accountid", "name")
    assert (body["IsCustomEntity"], body["ObjectTypeCode"], body["ChangeTrackingEnabled"]) == (False, 1, True)
    assert body["DisplayName"]["LocalizedLabels"][0]["Label"] == "Account"
    assert body["DisplayName"]["LocalizedLabels"][0]["LanguageCode"] == 1033
    assert body["DisplayName"]["UserLocalizedLabel"]["Label"] == "Account"
    same = (await api.get(f"EntityDefinitions({body['MetadataId']})?$select=LogicalName")).json()
    assert same["LogicalName"] == "account"
    assert error_of(await api.get("EntityDefinitions(LogicalName='nosuch')"))[:2] == (404, "0x80040217")


async def test_entity_definitions_filter_and_select(api):
    response = await api.get("EntityDefinitions?$select=LogicalName,PrimaryIdAttribute"
                             "&$filter=IsCustomEntity eq false and (LogicalName eq 'account' or LogicalName eq 'lead')")
    body = response.json()
    assert sorted(v["LogicalName"] for v in body["value"]) == ["account", "lead"]
    assert set(body["value"][0]) == {"MetadataId", "LogicalName", "PrimaryIdAttribute"}
    all_tables = (await api.get("EntityDefinitions?$select=LogicalName")).json()["value"]
    assert {"account", "contact", "lead", "opportunity", "incident", "task", "phonecall", "email", "appointment",
            "activitypointer", "quote", "salesorder", "invoice", "product", "queue", "queueitem", "systemuser", "team",
            "businessunit", "transactioncurrency", "annotation", "serviceendpoint", "sdkmessage", "sdkmessagefilter",
            "sdkmessageprocessingstep", "organization"} <= {v["LogicalName"] for v in all_tables}
    org_owned = (await api.get("EntityDefinitions?$select=LogicalName&$filter=OwnershipType eq "
                               "Microsoft.Dynamics.CRM.OwnershipTypes'OrganizationOwned' and CanCreateAttributes/Value eq true")).json()
    assert "product" in {v["LogicalName"] for v in org_owned["value"]}
    assert error_of(await api.get("EntityDefinitions?$select=Nope"))[:2] == (400, "0x0")


async def test_attributes_with_casts_and_option_sets(api):
    attrs = (await api.get(f"{ACCOUNT}/Attributes?$select=LogicalName,AttributeType")).json()["value"]
    by_name = {a["LogicalName"]: a for a in attrs}
    assert by_name["revenue"]["AttributeType"] == "Money"
    assert by_name["primarycontactid"]["@odata.type"] == "#Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    assert by_name["ownerid"]["AttributeType"] == "Owner"
    picklists = (await api.get(f"{ACCOUNT}/Attributes/{PICKLIST}?$select=LogicalName&$expand=OptionSet($select=Options)")).json()
    category = next(p for p in picklists["value"] if p["LogicalName"] == "accountcategorycode")
    options = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in category["OptionSet"]["Options"]}
    assert options == {1: "Preferred Customer", 2: "Standard"}
    one = (await api.get(f"{ACCOUNT}/Attributes(LogicalName='accountcategorycode')/{PICKLIST}?$select=LogicalName&$expand=OptionSet")).json()
    assert one["OptionSet"]["OptionSetType"] == "Picklist"
    states = (await api.get("EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='statecode')/"
                            "Microsoft.Dynamics.CRM.StateAttributeMetadata/OptionSet")).json()
    assert [o["Label"]["LocalizedLabels"][0]["Label"] for o in states["Options"]] == ["Open", "Qualified", "Disqualified"]
    statuses = (await api.get("EntityDefinitions(LogicalName='opportunity')/Attributes(LogicalName='statuscode')/"
                              "Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet")).json()
    assert {(o["Value"], o["State"]) for o in statuses["OptionSet"]["Options"]} >= {(3, 1), (4, 2)}
    money = (await api.get(f"{ACCOUNT}/Attributes(LogicalName='revenue')/Microsoft.Dynamics.CRM.MoneyAttributeMetadata"
                           "?$select=LogicalName,Precision")).json()
    assert money["Precision"] == 2
    customer = (await api.get("EntityDefinitions(LogicalName='contact')/Attributes(LogicalName='parentcustomerid')/"
                              "Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=Targets")).json()
    assert customer["Targets"] == ["account", "contact"]
    assert error_of(await api.get(f"{ACCOUNT}/Attributes/Microsoft.Dynamics.CRM.EnumAttributeMetadata"))[0] == 400
    expanded = (await api.get(f"{ACCOUNT}?$select=LogicalName&$expand=Attributes($select=LogicalName;$filter="
                              "AttributeType eq Microsoft.Dynamics.CRM.AttributeTypeCode'Money')")).json()
    assert {a["LogicalName"] for a in expanded["Attributes"]} >= {"revenue", "creditlimit"}


async def test_create_column_then_use_it_at_once(api, unique):
    schema_name = f"new_Score{unique}"
    response = await api.post(f"{ACCOUNT}/Attributes", json={
        "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata", "SchemaName": schema_name,
        "DisplayName": label("Score"), "Description": label("How much we like them"),
        "RequiredLevel": {"Value": "None", "CanBeChanged": True, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "MinValue": 0, "MaxValue": 100})
    assert response.status_code == 204
    assert "/Attributes(" in response.headers["OData-EntityId"]
    column = schema_name.lower()
    created = await api.post(f"accounts?$select=name,{column}", json={"name": "Scored", column: 42},
                             headers={"Prefer": "return=representation"})
    assert created.json()[column] == 42
    found = (await api.get(f"accounts?$select=name&$filter={column} eq 42")).json()["value"]
    assert [v["name"] for v in found] == ["Scored"]
    too_big = await api.post("accounts", json={"name": "x", column: 1000})
    assert error_of(too_big)[:2] == (400, "0x80044331")
    meta = (await api.get(f"{ACCOUNT}/Attributes(LogicalName='{column}')/Microsoft.Dynamics.CRM.IntegerAttributeMetadata")).json()
    assert (meta["IsCustomAttribute"], meta["MaxValue"], meta["SchemaName"]) == (True, 100, schema_name)
    duplicate = await api.post(f"{ACCOUNT}/Attributes", json={
        "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata", "SchemaName": schema_name})
    assert error_of(duplicate)[0] == 400
    assert f'<Property Name="{column}" Type="Edm.Int32"/>' in (await api.get("$metadata")).text


async def test_create_choice_column_with_options(api, unique):
    schema_name = f"new_Tier{unique}"
    response = await api.post(f"{ACCOUNT}/Attributes", json={
        "@odata.type": f"{PICKLIST}", "SchemaName": schema_name, "DisplayName": label("Tier"),
        "OptionSet": {"@odata.type": "Microsoft.Dynamics.CRM.OptionSetMetadata", "IsGlobal": False, "OptionSetType": "Picklist",
                      "Options": [{"Value": 100000000, "Label": label("Gold")}, {"Value": 100000001, "Label": label("Silver")}]}})
    assert response.status_code == 204
    column = schema_name.lower()
    created = await api.post(f"accounts?$select={column}", json={"name": "Tiered", column: 100000001}, headers={
        "Prefer": 'return=representation,odata.include-annotations="OData.Community.Display.V1.FormattedValue"'})
    assert created.json()[f"{column}@OData.Community.Display.V1.FormattedValue"] == "Silver"
    assert error_of(await api.post("accounts", json={"name": "x", column: 7}))[:2] == (400, "0x8004431a")


async def test_update_column_labels_with_and_without_merge(api, unique):
    schema_name = f"new_Note{unique}"
    await api.post(f"{ACCOUNT}/Attributes", json={
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "SchemaName": schema_name, "MaxLength": 20,
        "DisplayName": label("Note"), "Description": label("Free text")})
    url = f"{ACCOUNT}/Attributes(LogicalName='{schema_name.lower()}')"
    current = (await api.get(url + "/Microsoft.Dynamics.CRM.StringAttributeMetadata")).json()
    current.pop("@odata.context")
    merged = {**current, "DisplayName": label("Sticky note"), "Description": {"LocalizedLabels": []}}
    assert (await api.put(url, json=merged, headers={"MSCRM.MergeLabels": "true"})).status_code == 204
    after = (await api.get(url + "?$select=DisplayName,Description")).json()
    assert after["DisplayName"]["UserLocalizedLabel"]["Label"] == "Sticky note"
    assert after["Description"]["UserLocalizedLabel"]["Label"] == "Free text"          # kept by MergeLabels
    replaced = {**current, "DisplayName": label("Replaced"), "Description": {"LocalizedLabels": []}, "MaxLength": 40}
    assert (await api.put(url, json=replaced)).status_code == 204
    after = (await api.get(url + "/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=Description,MaxLength")).json()
    assert after["Description"] == {"LocalizedLabels": [], "UserLocalizedLabel": None}
    assert after["MaxLength"] == 40
    assert error_of(await api.patch(url, json={}))[0] == 405


async def test_relationships(api):
    one_to_many = (await api.get(f"{ACCOUNT}/OneToManyRelationships?$select=SchemaName,ReferencingEntity")).json()["value"]
    assert {"Account_Tasks", "contact_customer_accounts", "opportunity_customer_accounts"} <= {r["SchemaName"] for r in one_to_many}
    many_to_one = (await api.get(f"{ACCOUNT}/ManyToOneRelationships?$select=SchemaName,ReferencingEntityNavigationPropertyName")).json()
    assert {"primarycontactid", "parentaccountid", "ownerid"} <= {r["ReferencingEntityNavigationPropertyName"]
                                                                  for r in many_to_one["value"]}
    n_to_n = (await api.get(f"{ACCOUNT}/ManyToManyRelationships?$select=SchemaName,IntersectEntityName")).json()["value"]
    assert {"SchemaName": "accountleads_association", "IntersectEntityName": "accountleads"} in [
        {k: v for k, v in r.items() if k in ("SchemaName", "IntersectEntityName")} for r in n_to_n]
    tasks = (await api.get("RelationshipDefinitions(SchemaName='Account_Tasks')")).json()
    assert (tasks["ReferencedEntity"], tasks["ReferencingEntity"], tasks["ReferencingAttribute"],
            tasks["ReferencingEntityNavigationPropertyName"]) == ("account", "task", "regardingobjectid", "regardingobjectid_account_task")
    customer = (await api.get("RelationshipDefinitions/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
                              "?$select=SchemaName&$filter=ReferencedEntity eq 'account' and ReferencingEntity eq 'contact'")).json()
    assert "contact_customer_accounts" in {r["SchemaName"] for r in customer["value"]}
    assert (await api.get(f"RelationshipDefinitions({tasks['MetadataId']})?$select=SchemaName")).json()["SchemaName"] == "Account_Tasks"
    keys = (await api.get(f"{ACCOUNT}/Keys?$select=LogicalName,KeyAttributes")).json()["value"]
    assert [k["KeyAttributes"] for k in keys] == [["accountnumber"]]


async def test_global_option_sets(api):
    origin = (await api.get("GlobalOptionSetDefinitions(Name='incident_caseorigincode')")).json()
    assert origin["IsGlobal"] is True and origin["@odata.type"] == "#Microsoft.Dynamics.CRM.OptionSetMetadata"
    assert {o["Label"]["UserLocalizedLabel"]["Label"] for o in origin["Options"]} >= {"Phone", "Email", "Web"}
    listed = (await api.get("GlobalOptionSetDefinitions?$select=Name")).json()["value"]
    assert "incident_caseorigincode" in {o["Name"] for o in listed}
    assert error_of(await api.get("GlobalOptionSetDefinitions?$filter=Name eq 'x'"))[0] == 400


async def test_create_relationships_then_bind_and_associate(api, unique):
    one_to_many = f"new_account_contact_{unique}"
    lookup = f"new_Sponsor{unique}"
    response = await api.post("RelationshipDefinitions", json={
        "@odata.type": "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata", "SchemaName": one_to_many,
        "ReferencedEntity": "contact", "ReferencedAttribute": "contactid", "ReferencingEntity": "account",
        "Lookup": {"@odata.type": "Microsoft.Dynamics.CRM.LookupAttributeMetadata", "SchemaName": lookup,
                   "DisplayName": label("Sponsor")}})
    assert response.status_code == 204 and "/RelationshipDefinitions(" in response.headers["OData-EntityId"]
    contact = await api.post("contacts", json={"lastname": "Sponsor"}, headers={"Prefer": "return=representation"})
    contact_id = contact.json()["contactid"]
    nav = lookup                        # Dataverse names the navigation property by the lookup's SchemaName
    account = await api.post(f"accounts?$select=name&$expand={nav}($select=lastname)", json={
        "name": "Sponsored", f"{nav}@odata.bind": f"/contacts({contact_id})"}, headers={"Prefer": "return=representation"})
    assert account.json()[nav]["lastname"] == "Sponsor"
    sponsored = (await api.get(f"contacts({contact_id})/{one_to_many}?$select=name")).json()["value"]
    assert [a["name"] for a in sponsored] == ["Sponsored"]

    n_to_n = f"new_account_product_{unique}"
    assert (await api.post("RelationshipDefinitions", json={
        "@odata.type": "Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata", "SchemaName": n_to_n,
        "Entity1LogicalName": "account", "Entity2LogicalName": "product"})).status_code == 204
    product = await api.post("products", json={"name": "Widget", "productnumber": f"W-{unique}"},
                             headers={"Prefer": "return=representation"})
    account_id = account.json()["accountid"]
    link = await api.post(f"accounts({account_id})/{n_to_n}/$ref",
                          json={"@odata.id": f"products({product.json()['productid']})"})
    assert link.status_code == 204
    assert [p["name"] for p in (await api.get(f"accounts({account_id})/{n_to_n}?$select=name")).json()["value"]] == ["Widget"]
    again = await api.post("RelationshipDefinitions", json={
        "@odata.type": "Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata", "SchemaName": n_to_n,
        "Entity1LogicalName": "account", "Entity2LogicalName": "product"})
    assert error_of(again)[0] == 400


async def test_create_a_table_then_use_it(api, unique):
    schema_name = f"new_BankAccount{unique}"
    response = await api.post("EntityDefinitions", json={
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata", "SchemaName": schema_name,
        "DisplayName": label("Bank Account"), "DisplayCollectionName": label("Bank Accounts"),
        "OwnershipType": "UserOwned", "IsActivity": False, "HasActivities": False, "HasNotes": False,
        "Attributes": [{"@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "AttributeType": "String",
                        "SchemaName": "new_AccountName", "MaxLength": 100, "IsPrimaryName": True,
                        "DisplayName": label("Account Name")}]})
    assert response.status_code == 204
    name = schema_name.lower()
    definition = (await api.get(f"EntityDefinitions(LogicalName='{name}')?$select=EntitySetName,PrimaryIdAttribute,"
                                "PrimaryNameAttribute,IsCustomEntity")).json()
    assert (definition["EntitySetName"], definition["PrimaryIdAttribute"], definition["PrimaryNameAttribute"],
            definition["IsCustomEntity"]) == (name + "s", name + "id", "new_accountname", True)
    created = await api.post(f"{name}s?$select=new_accountname,ownerid,statecode", json={"new_accountname": "Savings"},
                             headers={"Prefer": "return=representation"})
    assert created.status_code == 201
    body = created.json()
    assert (body["new_accountname"], body["statecode"]) == ("Savings", 0) and body["_ownerid_value"]
    listed = (await api.get(f"{name}s?$select=new_accountname&$filter=startswith(new_accountname,'Sav')")).json()
    assert [r["new_accountname"] for r in listed["value"]] == ["Savings"]
    assert error_of(await api.post("EntityDefinitions", json={"SchemaName": schema_name, "Attributes": []}))[0] == 400


def test_random_metadata_bodies_never_cause_a_500(emulator):
    import json as _json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    dispatch = emulator.app.state.dispatch
    caller = {"oid": "00000000-0000-4000-8000-0000000000a3"}
    keys = st.sampled_from(["@odata.type", "SchemaName", "DisplayName", "LocalizedLabels", "Label", "LanguageCode",
                            "RequiredLevel", "Value", "MaxLength", "Precision", "MinValue", "OptionSet", "Options",
                            "Attributes", "IsPrimaryName", "Lookup", "ReferencedEntity", "ReferencingEntity",
                            "Entity1LogicalName", "Entity2LogicalName", "Format", "TrueOption"])
    leaves = (st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8)
              | st.sampled_from(["Microsoft.Dynamics.CRM.PicklistAttributeMetadata", "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                                 "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata", "new_X", "account", "contact"]))
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                          max_leaves=8)
    own = "new_fuzz" + __import__("uuid").uuid4().hex[:8]          # PUT only this column: the org is shared
    status, _, _ = dispatch("POST", "/api/data/v9.2/EntityDefinitions(LogicalName='account')/Attributes", {}, _json.dumps({
        "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata", "SchemaName": own}).encode(), caller=caller)
    assert status == 204
    urls = st.sampled_from(["EntityDefinitions(LogicalName='account')/Attributes", "RelationshipDefinitions",
                            "EntityDefinitions", f"EntityDefinitions(LogicalName='account')/Attributes(LogicalName='{own}')"])

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(urls, st.dictionaries(keys, values, max_size=6))
    def check(url, body):
        method = "PUT" if url.endswith("')") and "Attributes(" in url else "POST"
        status, _, payload = dispatch(method, f"/api/data/v9.2/{url}", {}, _json.dumps(body).encode(), caller=caller)
        assert status in (204, 400, 404), (url, body, payload)

    check()
