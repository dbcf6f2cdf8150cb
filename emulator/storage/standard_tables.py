"""The standard Dataverse tables the emulator starts with: columns, option sets, alternate keys and
relationships, in a compact table-per-call form (system columns are added by `TableBuilder`)."""

from __future__ import annotations

from d365_components.emulator.storage.columns import (
    PRIORITY_OPTIONS,
    ColumnSpec,
    LookupSpec,
    active_states,
    activity_states,
    boolean_column,
    choice_column,
    choices_column,
    customer_lookup,
    datetime_column,
    decimal_column,
    double_column,
    entity_name_column,
    guid_column,
    integer_column,
    memo_column,
    money_column,
    regarding_lookup,
    state_option_sets,
    string_column,
)
from d365_components.emulator.storage.schema import ManyToMany, Option, OptionSet, Schema
from d365_components.emulator.storage.table_builder import TableBuilder


def standard_schema() -> Schema:
    """The 26 standard tables with their columns, option sets, keys and relationships."""
    b = TableBuilder()
    industry = OptionSet("industrycode", [Option(v, text) for v, text in {
        1: "Accounting", 2: "Agriculture and Non-petrol Natural Resource Extraction", 3: "Broadcasting Printing and Publishing",
        4: "Brokers", 5: "Building Supply Retail", 6: "Business Services", 7: "Consulting", 8: "Consumer Services",
        9: "Design, Direction and Creative Management", 10: "Distributors, Dispatchers and Processors",
        11: "Doctor's Offices and Clinics", 12: "Durable Manufacturing", 13: "Eating and Drinking Places",
        14: "Entertainment Retail", 15: "Equipment Rental and Leasing", 16: "Financial"}.items()],
        is_global=True, display="Industry")
    b.schema.option_sets[industry.name] = industry
    origin = OptionSet("incident_caseorigincode", [Option(v, text) for v, text in {
        1: "Phone", 2: "Email", 3: "Web", 2483: "Facebook", 3986: "Twitter", 700610000: "IoT"}.items()],
        is_global=True, display="Origin")
    b.schema.option_sets[origin.name] = origin
    address = [string_column("address1_line1", 250, "Street 1"), string_column("address1_city", 80, "City"),
               string_column("address1_stateorprovince", 50, "State/Province"), string_column("address1_postalcode", 20, "ZIP/Postal Code"),
               string_column("address1_country", 80, "Country/Region"), double_column("address1_latitude", "Latitude"),
               double_column("address1_longitude", "Longitude")]

    b.table("account", "accounts", "accountid", "name", 1, "Account", "Accounts", [
        string_column("name", 160, "Account Name"), string_column("accountnumber", 20, "Account Number"), memo_column("description", 2000, "Description"),
        string_column("telephone1", 50, "Main Phone"), string_column("emailaddress1", 100, "Email"), string_column("websiteurl", 200, "Website"),
        money_column("revenue", "Annual Revenue"), money_column("creditlimit", "Credit Limit"), integer_column("numberofemployees", "Number of Employees", 0, 1000000000),
        boolean_column("creditonhold", "Credit Hold"), boolean_column("donotemail", "Do not allow Emails", "Do Not Allow", "Allow"),
        choice_column("accountcategorycode", {1: "Preferred Customer", 2: "Standard"}, "Category"),
        choice_column("customertypecode", {1: "Competitor", 2: "Consultant", 3: "Customer", 4: "Investor", 5: "Partner", 6: "Influencer",
                                7: "Press", 8: "Prospect", 9: "Reseller", 10: "Supplier", 11: "Vendor", 12: "Other"}, "Relationship Type"),
        choice_column("industrycode", industry, "Industry"),
        choices_column("new_channels", {100000000: "Email", 100000001: "Phone", 100000002: "Web", 100000003: "Social"}, "Channels"),
        datetime_column("lastonholdtime", "Last On Hold Time"),
        LookupSpec("primarycontactid", {"contact": ("account_primary_contact", "primarycontactid")}, "Primary Contact"),
        LookupSpec("parentaccountid", {"account": ("account_parent_account", "parentaccountid")}, "Parent Account"),
        LookupSpec("originatingleadid", {"lead": ("account_originating_lead", "originatingleadid")}, "Originating Lead"),
        *address,
    ], state=active_states(), keys=[("accountnumber_key", ["accountnumber"])])

    b.table("contact", "contacts", "contactid", "fullname", 2, "Contact", "Contacts", [
        string_column("fullname", 160, "Full Name"), string_column("firstname", 50, "First Name"), string_column("lastname", 50, "Last Name", "ApplicationRequired"),
        string_column("emailaddress1", 100, "Email"), string_column("telephone1", 50, "Business Phone"), string_column("mobilephone", 50, "Mobile Phone"),
        string_column("jobtitle", 100, "Job Title"), memo_column("description", 2000, "Description"), datetime_column("birthdate", "Birthday", date_only=True),
        choice_column("gendercode", {1: "Male", 2: "Female"}, "Gender"), boolean_column("donotemail", "Do not allow Emails", "Do Not Allow", "Allow"),
        money_column("annualincome", "Annual Income"), integer_column("numberofchildren", "No. of Children", 0, 1000000000),
        customer_lookup("parentcustomerid", "contact", "Company Name"),
        LookupSpec("originatingleadid", {"lead": ("contact_originating_lead", "originatingleadid")}, "Originating Lead"),
        *address,
    ], state=active_states(), keys=[("emailaddress1_key", ["emailaddress1"])])

    b.table("lead", "leads", "leadid", "fullname", 4, "Lead", "Leads", [
        string_column("fullname", 160, "Name"), string_column("subject", 300, "Topic"), string_column("firstname", 50, "First Name"),
        string_column("lastname", 50, "Last Name"), string_column("companyname", 100, "Company Name"), string_column("emailaddress1", 100, "Email"),
        string_column("telephone1", 50, "Business Phone"), string_column("jobtitle", 100, "Job Title"), memo_column("description", 2000, "Description"),
        money_column("estimatedamount", "Est. Value"), datetime_column("estimatedclosedate", "Est. Close Date", date_only=True),
        choice_column("leadsourcecode", {1: "Advertisement", 2: "Employee Referral", 3: "External Referral", 4: "Partner",
                             5: "Public Relations", 6: "Seminar", 7: "Trade Show", 8: "Web", 9: "Word of Mouth", 10: "Other"}, "Lead Source"),
        choice_column("leadqualitycode", {1: "Hot", 2: "Warm", 3: "Cold"}, "Rating"), choice_column("industrycode", industry, "Industry"),
        LookupSpec("parentaccountid", {"account": ("lead_parent_account", "parentaccountid")}, "Parent Account for lead"),
        LookupSpec("parentcontactid", {"contact": ("lead_parent_contact", "parentcontactid")}, "Parent Contact for lead"),
        LookupSpec("qualifyingopportunityid", {"opportunity": ("lead_qualifying_opportunity", "qualifyingopportunityid")}, "Qualifying Opportunity"),
        customer_lookup("customerid", "lead", "Potential Customer"),
        *address,
    ], state=state_option_sets({0: "Open", 1: "Qualified", 2: "Disqualified"},
                    {1: ("New", 0), 2: ("Contacted", 0), 3: ("Qualified", 1), 4: ("Lost", 2), 5: ("Cannot Contact", 2),
                     6: ("No Longer Interested", 2), 7: ("Canceled", 2)}))

    b.table("opportunity", "opportunities", "opportunityid", "name", 3, "Opportunity", "Opportunities", [
        string_column("name", 300, "Topic"), memo_column("description", 2000, "Description"), money_column("estimatedvalue", "Est. Revenue"),
        money_column("actualvalue", "Actual Revenue"), datetime_column("estimatedclosedate", "Est. Close Date", date_only=True),
        datetime_column("actualclosedate", "Actual Close Date", date_only=True), integer_column("closeprobability", "Probability", 0, 100),
        choice_column("opportunityratingcode", {1: "Hot", 2: "Warm", 3: "Cold"}, "Rating"),
        choice_column("salesstagecode", {1: "Qualify", 2: "Develop", 3: "Propose", 4: "Close"}, "Process Code"),
        customer_lookup("customerid", "opportunity", "Potential Customer"),
        LookupSpec("parentaccountid", {"account": ("opportunity_parent_account", "parentaccountid")}, "Account"),
        LookupSpec("parentcontactid", {"contact": ("opportunity_parent_contact", "parentcontactid")}, "Contact"),
        LookupSpec("originatingleadid", {"lead": ("opportunity_originating_lead", "originatingleadid")}, "Originating Lead"),
    ], state=state_option_sets({0: "Open", 1: "Won", 2: "Lost"},
                    {1: ("In Progress", 0), 2: ("On Hold", 0), 3: ("Won", 1), 4: ("Canceled", 2), 5: ("Out-Sold", 2)}))

    b.table("incident", "incidents", "incidentid", "title", 112, "Case", "Cases", [
        string_column("title", 200, "Case Title"), string_column("ticketnumber", 100, "Case Number"), memo_column("description", 2000, "Description"),
        choice_column("caseorigincode", origin, "Origin"), choice_column("prioritycode", {1: "High", 2: "Normal", 3: "Low"}, "Priority"),
        choice_column("casetypecode", {1: "Question", 2: "Problem", 3: "Request"}, "Case Type"),
        choice_column("severitycode", {1: "Default Value"}, "Severity"), boolean_column("escalated", "Is Escalated"),
        datetime_column("followupby", "Follow Up By"), customer_lookup("customerid", "incident", "Customer"),
        LookupSpec("primarycontactid", {"contact": ("contact_as_primary_contact", "primarycontactid")}, "Contact"),
        LookupSpec("productid", {"product": ("product_incidents", "productid")}, "Product"),
    ], state=state_option_sets({0: "Active", 1: "Resolved", 2: "Cancelled"},
                    {1: ("In Progress", 0), 2: ("On Hold", 0), 3: ("Waiting for Details", 0), 4: ("Researching", 0),
                     5: ("Problem Solved", 1), 1000: ("Information Provided", 1), 6: ("Cancelled", 2), 2000: ("Merged", 2)}),
        keys=[("ticketnumber_key", ["ticketnumber"])])

    def activity_cols() -> list[ColumnSpec]:
        return [
            string_column("subject", 200, "Subject", "ApplicationRequired"), memo_column("description", 2000, "Description"),
            datetime_column("scheduledstart", "Start Date"), datetime_column("scheduledend", "Due Date"), datetime_column("actualend", "Actual End"),
            integer_column("actualdurationminutes", "Duration", 0, 2147483647), choice_column("prioritycode", PRIORITY_OPTIONS, "Priority"),
            entity_name_column("activitytypecode", "Activity Type")]

    b.table("activitypointer", "activitypointers", "activityid", "subject", 4200, "Activity", "Activities",
            [*activity_cols(), regarding_lookup("activitypointer", "ActivityPointers")], activity=True,
            state=state_option_sets({0: "Open", 1: "Completed", 2: "Canceled", 3: "Scheduled"},
                         {1: ("Open", 0), 2: ("Completed", 1), 3: ("Canceled", 2), 4: ("Scheduled", 3)}))
    b.table("task", "tasks", "activityid", "subject", 4212, "Task", "Tasks",
            [*activity_cols(), integer_column("percentcomplete", "Percent Complete", 0, 100), string_column("category", 250, "Category"),
             regarding_lookup("task", "Tasks")], activity=True,
            state=activity_states({2: ("Not Started", 0), 3: ("In Progress", 0), 4: ("Waiting on someone else", 0),
                            7: ("Deferred", 0), 5: ("Completed", 1), 6: ("Canceled", 2)}))
    b.table("phonecall", "phonecalls", "activityid", "subject", 4210, "Phone Call", "Phone Calls",
            [*activity_cols(), string_column("phonenumber", 200, "Phone Number"), boolean_column("directioncode", "Direction", "Outgoing", "Incoming"),
             regarding_lookup("phonecall", "Phonecalls")], activity=True, schema_name="PhoneCall",
            state=activity_states({1: ("Open", 0), 2: ("Made", 1), 4: ("Received", 1), 3: ("Canceled", 2)}))
    b.table("email", "emails", "activityid", "subject", 4202, "Email", "Email Messages",
            [*activity_cols(), string_column("sender", 250, "From"), string_column("torecipients", 500, "To"), boolean_column("directioncode", "Direction", "Outgoing", "Incoming"),
             regarding_lookup("email", "Emails")], activity=True,
            state=activity_states({1: ("Draft", 0), 8: ("Failed", 0), 2: ("Completed", 1), 3: ("Sent", 1), 4: ("Received", 1),
                            6: ("Pending Send", 1), 7: ("Sending", 1), 5: ("Canceled", 2)}))
    b.table("appointment", "appointments", "activityid", "subject", 4201, "Appointment", "Appointments",
            [*activity_cols(), string_column("location", 200, "Location"), boolean_column("isalldayevent", "All Day Event"),
             regarding_lookup("appointment", "Appointments")], activity=True,
            state=state_option_sets({0: "Open", 1: "Completed", 2: "Canceled", 3: "Scheduled"},
                         {1: ("Free", 0), 2: ("Tentative", 0), 3: ("Completed", 1), 4: ("Canceled", 2), 5: ("Busy", 3),
                          6: ("Out of Office", 3)}))

    def sales(kind: str, number: str, extra: list[ColumnSpec]) -> list[ColumnSpec]:
        return [
            string_column("name", 300, "Name"), string_column(number, 100, kind + " ID"), memo_column("description", 2000, "Description"),
            money_column("totalamount", "Total Amount"), money_column("totaltax", "Total Tax"), money_column("discountamount", "Order Discount Amount"),
            datetime_column("datedelivered", "Date Delivered", date_only=True), customer_lookup("customerid", kind.lower().replace(" ", ""), "Potential Customer"),
            *extra]

    b.table("quote", "quotes", "quoteid", "name", 1084, "Quote", "Quotes", sales("Quote", "quotenumber", [
        LookupSpec("opportunityid", {"opportunity": ("opportunity_quotes", "opportunityid")}, "Opportunity")]),
        state=state_option_sets({0: "Draft", 1: "Active", 2: "Won", 3: "Closed"},
                     {1: ("In Progress", 0), 2: ("In Progress", 1), 3: ("Open", 1), 4: ("Won", 2), 5: ("Lost", 3),
                      6: ("Canceled", 3), 7: ("Revised", 3)}), keys=[("quotenumber_key", ["quotenumber"])])
    b.table("salesorder", "salesorders", "salesorderid", "name", 1088, "Order", "Orders", sales("Order", "ordernumber", [
        LookupSpec("opportunityid", {"opportunity": ("opportunity_sales_orders", "opportunityid")}, "Opportunity"),
        LookupSpec("quoteid", {"quote": ("quote_orders", "quoteid")}, "Quote")]), schema_name="SalesOrder",
        state=state_option_sets({0: "Active", 1: "Submitted", 2: "Canceled", 3: "Fulfilled", 4: "Invoiced"},
                     {1: ("New", 0), 2: ("Pending", 0), 3: ("In Progress", 1), 4: ("No Money", 2), 100001: ("Complete", 3),
                      100002: ("Partial", 3), 100003: ("Invoiced", 4)}), keys=[("ordernumber_key", ["ordernumber"])])
    b.table("invoice", "invoices", "invoiceid", "name", 1090, "Invoice", "Invoices", sales("Invoice", "invoicenumber", [
        LookupSpec("salesorderid", {"salesorder": ("order_invoices", "salesorderid")}, "Order"),
        LookupSpec("opportunityid", {"opportunity": ("opportunity_invoices", "opportunityid")}, "Opportunity"),
        datetime_column("duedate", "Due Date", date_only=True)]),
        state=state_option_sets({0: "Active", 1: "Closed (deprecated)", 2: "Paid", 3: "Canceled"},
                     {1: ("New", 0), 2: ("Partially Shipped", 0), 4: ("Billed", 0), 5: ("Booked (applies to services)", 0),
                      6: ("Installed (applies to services)", 0), 100001: ("Complete", 2), 100002: ("Partial", 2),
                      100003: ("Canceled", 3)}), keys=[("invoicenumber_key", ["invoicenumber"])])
    b.table("product", "products", "productid", "name", 1024, "Product", "Products", [
        string_column("name", 100, "Name"), string_column("productnumber", 100, "Product ID", "ApplicationRequired"), memo_column("description", 2000, "Description"),
        money_column("price", "List Price"), money_column("standardcost", "Standard Cost"), decimal_column("quantityonhand", "Quantity On Hand", 2),
        integer_column("quantitydecimal", "Decimals Supported", 0, 5),
        choice_column("producttypecode", {1: "Sales Inventory", 2: "Miscellaneous Charges", 3: "Services", 4: "Flat Fees"}, "Product Type"),
    ], ownership="OrganizationOwned", keys=[("productnumber_key", ["productnumber"])],
        state=state_option_sets({0: "Active", 1: "Retired", 2: "Draft", 3: "Under Revision"},
                     {1: ("Active", 0), 2: ("Retired", 1), 0: ("Draft", 2), 3: ("Under Revision", 3)}))
    b.table("queue", "queues", "queueid", "name", 2020, "Queue", "Queues", [
        string_column("name", 200, "Name"), string_column("emailaddress", 100, "Incoming Email"), memo_column("description", 2000, "Description"),
        choice_column("queueviewtype", {0: "Public", 1: "Private"}, "Type"),
    ], state=active_states())
    b.table("queueitem", "queueitems", "queueitemid", "title", 2029, "Queue Item", "Queue Items", [
        string_column("title", 300, "Title"), datetime_column("enteredon", "Entered Queue"), entity_name_column("objecttypecode", "Type"),
        LookupSpec("queueid", {"queue": ("queue_entries", "queueid")}, "Queue"),
        LookupSpec("objectid", {t: (f"{t.capitalize()}_QueueItem", f"objectid_{t}") for t in ("task", "email", "phonecall", "appointment", "incident")},
          "Object"),
        LookupSpec("workerid", {"systemuser": ("systemuser_queueitem_workerid", "workerid_systemuser")}, "Worked By"),
    ], ownership="OrganizationOwned", state=active_states())
    b.table("systemuser", "systemusers", "systemuserid", "fullname", 8, "User", "Users", [
        string_column("fullname", 200, "Full Name"), string_column("firstname", 64, "First Name"), string_column("lastname", 64, "Last Name"),
        string_column("domainname", 1024, "User Name"), string_column("internalemailaddress", 100, "Primary Email"), string_column("title", 128, "Title"),
        guid_column("azureactivedirectoryobjectid", "Azure AD Object ID"), guid_column("applicationid", "Application ID"),
        boolean_column("isdisabled", "Status", "Disabled", "Enabled"),
        choice_column("accessmode", {0: "Read-Write", 1: "Administrative", 2: "Read", 3: "Support User", 4: "Non-interactive", 5: "Delegated Admin"}, "Access Mode"),
        LookupSpec("businessunitid", {"businessunit": ("business_unit_system_users", "businessunitid")}, "Business Unit"),
    ], ownership="BusinessOwned", keys=[("aadobjectid_key", ["azureactivedirectoryobjectid"])])
    b.table("team", "teams", "teamid", "name", 9, "Team", "Teams", [
        string_column("name", 160, "Team Name"), memo_column("description", 2000, "Description"), guid_column("azureactivedirectoryobjectid", "Azure AD Object ID"),
        choice_column("teamtype", {0: "Owner", 1: "Access", 2: "Security Group", 3: "Office Group"}, "Team Type"), boolean_column("isdefault", "Is Default"),
        LookupSpec("businessunitid", {"businessunit": ("business_unit_teams", "businessunitid")}, "Business Unit"),
        LookupSpec("administratorid", {"systemuser": ("lk_teambase_administratorid", "administratorid")}, "Administrator"),
    ], ownership="BusinessOwned")
    b.table("businessunit", "businessunits", "businessunitid", "name", 10, "Business Unit", "Business Units", [
        string_column("name", 160, "Name"), string_column("divisionname", 100, "Division"), string_column("websiteurl", 200, "Website"), boolean_column("isdisabled", "Is Disabled"),
        LookupSpec("parentbusinessunitid", {"businessunit": ("business_unit_parent_business_unit", "parentbusinessunitid")}, "Parent Business"),
    ], ownership="BusinessOwned")
    b.table("transactioncurrency", "transactioncurrencies", "transactioncurrencyid", "currencyname", 9105, "Currency", "Currencies", [
        string_column("currencyname", 100, "Currency Name"), string_column("isocurrencycode", 5, "Currency Code"), string_column("currencysymbol", 10, "Currency Symbol"),
        decimal_column("exchangerate", "Exchange Rate", 10), integer_column("currencyprecision", "Currency Precision", 0, 4),
    ], ownership="OrganizationOwned", state=active_states(), schema_name="TransactionCurrency",
        keys=[("isocurrencycode_key", ["isocurrencycode"])])
    b.table("annotation", "annotations", "annotationid", "subject", 5, "Note", "Notes", [
        string_column("subject", 500, "Title"), memo_column("notetext", 100000, "Description"), string_column("filename", 255, "File Name"),
        string_column("mimetype", 256, "Mime Type"), memo_column("documentbody", 1073741823, "Document"), integer_column("filesize", "File Size (Bytes)", 0),
        boolean_column("isdocument", "Is Document", "Attachment", "Note"), entity_name_column("objecttypecode", "Object Type"),
        LookupSpec("objectid", {t: (f"{t.capitalize()}_Annotation", f"objectid_{t}") for t in
                       ("account", "contact", "lead", "opportunity", "incident", "task", "email", "phonecall", "appointment")}, "Regarding"),
    ], change_tracking=False)
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
