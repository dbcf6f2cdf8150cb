"""The tables the emulator starts with: a fresh org's standard tables (read from fresh_org.json) and
the system tables the emulator serves itself (webhook registration, SDK messages, organization), the
latter in a compact table-per-call form (system columns are added by `TableBuilder`)."""

from __future__ import annotations

from d365_components.emulator.storage.columns import (
    LookupSpec,
    boolean_column,
    choice_column,
    entity_name_column,
    integer_column,
    memo_column,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.fresh_org import add_fresh_org_tables, fresh_org_facts
from d365_components.emulator.storage.schema import ManyToMany, Schema
from d365_components.emulator.storage.table_builder import TableBuilder

SYSTEM_TABLES = frozenset({"serviceendpoint", "sdkmessage", "sdkmessagefilter", "sdkmessageprocessingstep", "organization"})


def standard_schema() -> Schema:
    """A fresh org's standard tables (emulator/storage/fresh_org.json, through fresh_org.py), then the
    system tables webhooks and change tracking need, with their relationships."""
    b = TableBuilder()
    add_fresh_org_tables(b, frozenset(fresh_org_facts()) | SYSTEM_TABLES)
    b.table("serviceendpoint", "serviceendpoints", "serviceendpointid", "name", 4618, "Service Endpoint", "Service Endpoints", [
        string_column("name", 256, "Name"), memo_column("description", 2000, "Description"), string_column("url", 2000, "Url Address"),
        string_column("namespaceaddress", 255, "Namespace Address"), string_column("path", 160, "Path"), string_column("solutionnamespace", 160, "Solution Namespace"),
        memo_column("authvalue", 4000, "Auth Value"),
        choice_column("contract", {1: "OneWay", 2: "Queue", 3: "Rest", 4: "TwoWay", 5: "Topic", 6: "Queue (Persistent)", 7: "Event Hub",
                       8: "Webhook", 9: "Event Grid", 10: "Managed Data Lake"}, "Contract"),
        choice_column("authtype", {1: "ACS", 2: "SAS Key", 3: "SAS Token", 4: "Webhook Key", 5: "Http Header", 6: "Http Query String",
                       7: "Connection String", 8: "Access Key", 9: "Managed Identity"}, "Specify the authentication type"),
        choice_column("messageformat", {1: ".NET Binary", 2: "JSON", 3: "XML"}, "Message Format"),
        choice_column("userclaim", {1: "None", 2: "UserId", 3: "UserInfo"}, "User Information Sent"),
        choice_column("connectionmode", {1: "Normal", 2: "Federated"}, "Connection Mode"),
    ], ownership="OrganizationOwned", schema_name="ServiceEndpoint")
    b.table("sdkmessage", "sdkmessages", "sdkmessageid", "name", 4606, "Sdk Message", "Sdk Messages", [
        string_column("name", 256, "Name"), string_column("categoryname", 25, "Category Name"), boolean_column("isprivate", "Is Private"),
        boolean_column("isactive", "Is Active"), boolean_column("autotransact", "Auto Transact"),
    ], ownership="OrganizationOwned", change_tracking=False, schema_name="SdkMessage")
    b.table("sdkmessagefilter", "sdkmessagefilters", "sdkmessagefilterid", "name", 4607, "Sdk Message Filter", "Sdk Message Filters", [
        string_column("name", 256, "Name"), entity_name_column("primaryobjecttypecode", "Primary Object Type Code"), entity_name_column("secondaryobjecttypecode", "Secondary Object Type Code"),
        boolean_column("iscustomprocessingstepallowed", "Custom Processing Step Allowed"), boolean_column("isvisible", "Is Visible"),
        LookupSpec("sdkmessageid", {"sdkmessage": ("sdkmessageid_sdkmessagefilter", "sdkmessageid")}, "SDK Message"),
    ], ownership="OrganizationOwned", change_tracking=False, schema_name="SdkMessageFilter")
    b.table("sdkmessageprocessingstep", "sdkmessageprocessingsteps", "sdkmessageprocessingstepid", "name", 4608,
            "Sdk Message Processing Step", "Sdk Message Processing Steps", [
        string_column("name", 256, "Name"), memo_column("description", 256, "Description"), memo_column("configuration", 1073741823, "Configuration"),
        string_column("filteringattributes", 100000, "Filtering Attributes"), integer_column("rank", "Execution Order", 0),
        choice_column("stage", {5: "Initial Pre-operation (For internal use only)", 10: "Pre-validation", 15: "Internal Pre-operation Before External Plugins (For internal use only)",
                    20: "Pre-operation", 30: "Main Operation (For internal use only)", 40: "Post-operation", 50: "Post-operation (Deprecated)"},
          "Execution Stage"),
        choice_column("mode", {0: "Synchronous", 1: "Asynchronous"}, "Execution Mode"),
        choice_column("supporteddeployment", {0: "Server Only", 1: "Microsoft Dynamics 365 Client for Outlook Only", 2: "Both"}, "Deployment"),
        boolean_column("asyncautodelete", "Asynchronous Automatic Delete"),
        LookupSpec("sdkmessageid", {"sdkmessage": ("sdkmessageid_sdkmessageprocessingstep", "sdkmessageid")}, "SDK Message"),
        LookupSpec("sdkmessagefilterid", {"sdkmessagefilter": ("sdkmessagefilterid_sdkmessageprocessingstep", "sdkmessagefilterid")}, "Sdk Message Filter"),
        LookupSpec("eventhandler", {"serviceendpoint": ("serviceendpoint_sdkmessageprocessingstep", "eventhandler_serviceendpoint")}, "Event Handler"),
    ], state=state_option_sets({0: "Enabled", 1: "Disabled"}, {1: ("Enabled", 0), 2: ("Disabled", 1)}),
        change_tracking=False, schema_name="SdkMessageProcessingStep")
    b.table("organization", "organizations", "organizationid", "name", 1019, "Organization", "Organizations", [
        string_column("name", 160, "Organization Name"), string_column("uniquename", 100, "Unique Name"), string_column("version", 48, "Version"),
        integer_column("languagecode", "Language"), integer_column("timezoneruleversionnumber", "Time Zone Rule Version Number"),
        boolean_column("isauditenabled", "Is Auditing Enabled"),
        LookupSpec("basecurrencyid", {"transactioncurrency": ("basecurrency_organization", "basecurrencyid")}, "Currency"),
    ], ownership="None", change_tracking=False)

    for rel in b.pending:
        b.schema.add_relationship(rel)
    b.schema.add_relationship(ManyToMany("accountleads_association", "account", "lead", "accountleads"))
    b.schema.add_relationship(ManyToMany("contactleads_association", "contact", "lead", "contactleads"))
    b.schema.add_relationship(ManyToMany("teammembership_association", "systemuser", "team", "teammembership"))
    b.schema.link()
    return b.schema
