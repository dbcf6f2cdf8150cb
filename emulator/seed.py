"""The standard Dataverse tables the emulator starts with, and the rows it seeds.

`standard_schema()` describes the tables (columns, option sets, alternate keys, relationships) in
a compact table-per-call form; every table also gets the system columns Dataverse adds to all
tables (primary key, state/status, created/modified stamps and users, owner, version number).
`seed_rows(store, mode)` inserts the organization, its business unit, the two users of
emulator/defaults.py, a team and the USD currency (always), plus SDK messages, filters and a few
sample accounts and contacts when `mode == "demo"`.
"""

from __future__ import annotations

from d365_components.emulator import defaults
from d365_components.emulator.schema import (
    AlternateKey,
    Column,
    ManyToMany,
    OneToMany,
    Option,
    OptionSet,
    Schema,
    Table,
)

USD_ID = "00000000-0000-4000-8000-0000000000c1"
TEAM_ID = "00000000-0000-4000-8000-0000000000e1"


# ---- column helpers ------------------------------------------------------------------------

def S(name, max_length=100, display="", required="None"):
    return Column(name, "String", display=display, max_length=max_length, required=required)


def M(name, max_length=2000, display=""):
    return Column(name, "Memo", display=display, max_length=max_length)


def I(name, display="", lo=-2147483648, hi=2147483647):
    return Column(name, "Integer", display=display, min_value=lo, max_value=hi)


def Mny(name, display=""):
    return Column(name, "Money", display=display, precision=2, min_value=-922337203685477, max_value=922337203685477)


def Dec(name, display="", precision=2):
    return Column(name, "Decimal", display=display, precision=precision, min_value=-100000000000, max_value=100000000000)


def Dbl(name, display=""):
    return Column(name, "Double", display=display, precision=5, min_value=-1e15, max_value=1e15)


def B(name, display="", true="Yes", false="No"):
    opts = OptionSet(name, [Option(0, false), Option(1, true)], kind="Boolean")
    return Column(name, "Boolean", display=display, option_set=opts)


def P(name, options: dict[int, str] | OptionSet, display=""):
    opts = options if isinstance(options, OptionSet) else OptionSet(
        name, [Option(v, lbl) for v, lbl in options.items()])
    return Column(name, "Picklist", display=display, option_set=opts)


def MSP(name, options: dict[int, str], display=""):
    opts = OptionSet(name, [Option(v, lbl) for v, lbl in options.items()], kind="MultiSelectPicklist")
    return Column(name, "MultiSelectPicklist", display=display, option_set=opts, is_custom=name.startswith("new_"))


def DT(name, display="", date_only=False):
    return Column(name, "DateTime", display=display, format="DateOnly" if date_only else "DateAndTime")


def G(name, display=""):
    return Column(name, "Uniqueidentifier", display=display)


def EN(name, display=""):
    return Column(name, "EntityName", display=display)


class L:
    """A lookup column spec: {target: (relationship schema name, navigation property)}."""

    def __init__(self, name, targets: dict[str, tuple[str, str]] | str, display="", kind=None, rel=None):
        if isinstance(targets, str):
            targets = {targets: (rel or f"{name}_{targets}", name)}
        self.name, self.targets, self.display = name, targets, display
        self.kind = kind or ("Customer" if set(targets) == {"account", "contact"} else "Lookup")


def customer(name, table, display="Customer"):
    return L(name, {"account": (f"{table}_customer_accounts", f"{name}_account"),
                    "contact": (f"{table}_customer_contacts", f"{name}_contact")}, display)


def regarding(activity: str, plural: str, targets=("account", "contact", "lead", "opportunity", "incident")):
    return L("regardingobjectid",
             {t: (f"{t.capitalize()}_{plural}", f"regardingobjectid_{t}_{activity}") for t in targets},
             "Regarding", kind="Lookup")


def states(states: dict[int, str], statuses: dict[int, tuple[str, int]]):
    return (OptionSet("statecode", [Option(v, lbl) for v, lbl in states.items()], kind="State"),
            OptionSet("statuscode", [Option(v, lbl, state=s) for v, (lbl, s) in statuses.items()], kind="Status"))


ACTIVE = lambda: states({0: "Active", 1: "Inactive"}, {1: ("Active", 0), 2: ("Inactive", 1)})  # noqa: E731
ACTIVITY = lambda statuses: states({0: "Open", 1: "Completed", 2: "Canceled"}, statuses)  # noqa: E731
PRIORITY = {0: "Low", 1: "Normal", 2: "High"}


class TableBuilder:
    """Adds tables to a schema with the system columns Dataverse gives every table (id, state,
    stamps, owner, version, currency for money) and the relationships of their lookups.

        builder = TableBuilder(store.schema)
        builder.table("new_thing", "new_things", "new_thingid", "new_name", 10001, "Thing", "Things", [S("new_name")])
        builder.finish(store)          # relationships, navigation properties, SQLite tables
    """

    def __init__(self, schema: Schema | None = None):
        self.schema = schema if schema is not None else Schema()
        self.pending: list[OneToMany] = []

    def finish(self, store=None) -> list[Table]:
        """Register the pending relationships, re-link the schema, create the new tables in `store`."""
        added = {rel.referencing for rel in self.pending}
        for rel in self.pending:
            if rel.schema_name not in self.schema.relationships:
                self.schema.add_relationship(rel)
        self.pending = []
        self.schema.link()
        tables = [self.schema.tables[name] for name in added]
        if store is not None:
            for t in tables:
                store.create_table(t)
        return tables

    def table(self, name, entity_set, pk, primary_name, otc, display, plural, cols, *,
              ownership="UserOwned", state=None, keys=(), activity=False, change_tracking=True,
              schema_name=None, description="", is_custom=False):
        t = Table(name, entity_set, pk, primary_name, otc, schema_name=schema_name or display.replace(" ", ""),
                  display=display, display_collection=plural, ownership=ownership, is_activity=activity,
                  change_tracking=change_tracking, description=description, is_custom=is_custom)
        self.schema.add_table(t)
        t.add(Column(pk, "Uniqueidentifier", display=display, is_primary_id=True))
        lookups = []
        for spec in cols:
            if isinstance(spec, L):
                col = Column(spec.name, spec.kind, display=spec.display, targets=tuple(spec.targets))
                lookups.append((spec, col))
                t.add(col)
            else:
                t.add(spec)
        t.columns[primary_name].is_primary_name = True
        t.columns[primary_name].required = "ApplicationRequired"
        if state:
            t.add(Column("statecode", "State", display="Status", option_set=state[0]))
            t.add(Column("statuscode", "Status", display="Status Reason", option_set=state[1]))
        system = [
            (DT("createdon", "Created On"), None), (DT("modifiedon", "Modified On"), None),
            (Column("versionnumber", "BigInt", display="Version Number"), None),
        ]
        for col, _ in system:
            col.writable = False
            t.add(col)
        for who in ("createdby", "modifiedby", "createdonbehalfby", "modifiedonbehalfby"):
            spec = L(who, {"systemuser": (f"lk_{name}_{who}", who)})
            col = t.add(Column(who, "Lookup", targets=("systemuser",), writable=False))
            lookups.append((spec, col))
        if ownership == "UserOwned":
            spec = L("ownerid", {"systemuser": (f"user_{entity_set}", "ownerid"),
                                 "team": (f"team_{entity_set}", "ownerid")}, "Owner", kind="Owner")
            lookups.append((spec, t.add(Column("ownerid", "Owner", display="Owner", targets=("systemuser", "team")))))
            spec = L("owningbusinessunit", {"businessunit": (f"business_unit_{entity_set}", "owningbusinessunit")})
            lookups.append((spec, t.add(Column("owningbusinessunit", "Lookup", targets=("businessunit",), writable=False))))
        if any(c.type == "Money" for c in t.columns.values()):
            spec = L("transactioncurrencyid", {"transactioncurrency": (f"TransactionCurrency_{t.schema_name}", "transactioncurrencyid")})
            lookups.append((spec, t.add(Column("transactioncurrencyid", "Lookup", display="Currency", targets=("transactioncurrency",)))))
            t.add(Dec("exchangerate", "Exchange Rate", precision=10))
        for key_name, key_cols in keys:
            t.keys.append(AlternateKey(key_name, tuple(key_cols), display=key_name))
        for spec, col in lookups:
            for target, (rel, nav) in spec.targets.items():
                self.pending.append(OneToMany(rel, target, name, col.name, nav))
        for col in t.columns.values():
            col.schema_name = col.schema_name if col.schema_name != col.name else _schema_name(col.name)
        return t


_Builder = TableBuilder        # the name other emulator modules first used


def _schema_name(name: str) -> str:
    return name[:1].upper() + name[1:]


def standard_schema() -> Schema:
    """The 26 standard tables with their columns, option sets, keys and relationships."""
    b = TableBuilder()
    industry = OptionSet("industrycode", [Option(v, l) for v, l in {
        1: "Accounting", 2: "Agriculture and Non-petrol Natural Resource Extraction", 3: "Broadcasting Printing and Publishing",
        4: "Brokers", 5: "Building Supply Retail", 6: "Business Services", 7: "Consulting", 8: "Consumer Services",
        9: "Design, Direction and Creative Management", 10: "Distributors, Dispatchers and Processors",
        11: "Doctor's Offices and Clinics", 12: "Durable Manufacturing", 13: "Eating and Drinking Places",
        14: "Entertainment Retail", 15: "Equipment Rental and Leasing", 16: "Financial"}.items()],
        is_global=True, display="Industry")
    b.schema.option_sets[industry.name] = industry
    origin = OptionSet("incident_caseorigincode", [Option(v, l) for v, l in {
        1: "Phone", 2: "Email", 3: "Web", 2483: "Facebook", 3986: "Twitter", 700610000: "IoT"}.items()],
        is_global=True, display="Origin")
    b.schema.option_sets[origin.name] = origin
    address = [S("address1_line1", 250, "Street 1"), S("address1_city", 80, "City"),
               S("address1_stateorprovince", 50, "State/Province"), S("address1_postalcode", 20, "ZIP/Postal Code"),
               S("address1_country", 80, "Country/Region"), Dbl("address1_latitude", "Latitude"),
               Dbl("address1_longitude", "Longitude")]

    b.table("account", "accounts", "accountid", "name", 1, "Account", "Accounts", [
        S("name", 160, "Account Name"), S("accountnumber", 20, "Account Number"), M("description", 2000, "Description"),
        S("telephone1", 50, "Main Phone"), S("emailaddress1", 100, "Email"), S("websiteurl", 200, "Website"),
        Mny("revenue", "Annual Revenue"), Mny("creditlimit", "Credit Limit"), I("numberofemployees", "Number of Employees", 0, 1000000000),
        B("creditonhold", "Credit Hold"), B("donotemail", "Do not allow Emails", "Do Not Allow", "Allow"),
        P("accountcategorycode", {1: "Preferred Customer", 2: "Standard"}, "Category"),
        P("customertypecode", {1: "Competitor", 2: "Consultant", 3: "Customer", 4: "Investor", 5: "Partner", 6: "Influencer",
                                7: "Press", 8: "Prospect", 9: "Reseller", 10: "Supplier", 11: "Vendor", 12: "Other"}, "Relationship Type"),
        P("industrycode", industry, "Industry"),
        MSP("new_channels", {100000000: "Email", 100000001: "Phone", 100000002: "Web", 100000003: "Social"}, "Channels"),
        DT("lastonholdtime", "Last On Hold Time"),
        L("primarycontactid", {"contact": ("account_primary_contact", "primarycontactid")}, "Primary Contact"),
        L("parentaccountid", {"account": ("account_parent_account", "parentaccountid")}, "Parent Account"),
        L("originatingleadid", {"lead": ("account_originating_lead", "originatingleadid")}, "Originating Lead"),
        *address,
    ], state=ACTIVE(), keys=[("accountnumber_key", ["accountnumber"])])

    b.table("contact", "contacts", "contactid", "fullname", 2, "Contact", "Contacts", [
        S("fullname", 160, "Full Name"), S("firstname", 50, "First Name"), S("lastname", 50, "Last Name", "ApplicationRequired"),
        S("emailaddress1", 100, "Email"), S("telephone1", 50, "Business Phone"), S("mobilephone", 50, "Mobile Phone"),
        S("jobtitle", 100, "Job Title"), M("description", 2000, "Description"), DT("birthdate", "Birthday", date_only=True),
        P("gendercode", {1: "Male", 2: "Female"}, "Gender"), B("donotemail", "Do not allow Emails", "Do Not Allow", "Allow"),
        Mny("annualincome", "Annual Income"), I("numberofchildren", "No. of Children", 0, 1000000000),
        customer("parentcustomerid", "contact", "Company Name"),
        L("originatingleadid", {"lead": ("contact_originating_lead", "originatingleadid")}, "Originating Lead"),
        *address,
    ], state=ACTIVE(), keys=[("emailaddress1_key", ["emailaddress1"])])

    b.table("lead", "leads", "leadid", "fullname", 4, "Lead", "Leads", [
        S("fullname", 160, "Name"), S("subject", 300, "Topic"), S("firstname", 50, "First Name"),
        S("lastname", 50, "Last Name"), S("companyname", 100, "Company Name"), S("emailaddress1", 100, "Email"),
        S("telephone1", 50, "Business Phone"), S("jobtitle", 100, "Job Title"), M("description", 2000, "Description"),
        Mny("estimatedamount", "Est. Value"), DT("estimatedclosedate", "Est. Close Date", date_only=True),
        P("leadsourcecode", {1: "Advertisement", 2: "Employee Referral", 3: "External Referral", 4: "Partner",
                             5: "Public Relations", 6: "Seminar", 7: "Trade Show", 8: "Web", 9: "Word of Mouth", 10: "Other"}, "Lead Source"),
        P("leadqualitycode", {1: "Hot", 2: "Warm", 3: "Cold"}, "Rating"), P("industrycode", industry, "Industry"),
        L("parentaccountid", {"account": ("lead_parent_account", "parentaccountid")}, "Parent Account for lead"),
        L("parentcontactid", {"contact": ("lead_parent_contact", "parentcontactid")}, "Parent Contact for lead"),
        L("qualifyingopportunityid", {"opportunity": ("lead_qualifying_opportunity", "qualifyingopportunityid")}, "Qualifying Opportunity"),
        customer("customerid", "lead", "Potential Customer"),
        *address,
    ], state=states({0: "Open", 1: "Qualified", 2: "Disqualified"},
                    {1: ("New", 0), 2: ("Contacted", 0), 3: ("Qualified", 1), 4: ("Lost", 2), 5: ("Cannot Contact", 2),
                     6: ("No Longer Interested", 2), 7: ("Canceled", 2)}))

    b.table("opportunity", "opportunities", "opportunityid", "name", 3, "Opportunity", "Opportunities", [
        S("name", 300, "Topic"), M("description", 2000, "Description"), Mny("estimatedvalue", "Est. Revenue"),
        Mny("actualvalue", "Actual Revenue"), DT("estimatedclosedate", "Est. Close Date", date_only=True),
        DT("actualclosedate", "Actual Close Date", date_only=True), I("closeprobability", "Probability", 0, 100),
        P("opportunityratingcode", {1: "Hot", 2: "Warm", 3: "Cold"}, "Rating"),
        P("salesstagecode", {1: "Qualify", 2: "Develop", 3: "Propose", 4: "Close"}, "Process Code"),
        customer("customerid", "opportunity", "Potential Customer"),
        L("parentaccountid", {"account": ("opportunity_parent_account", "parentaccountid")}, "Account"),
        L("parentcontactid", {"contact": ("opportunity_parent_contact", "parentcontactid")}, "Contact"),
        L("originatingleadid", {"lead": ("opportunity_originating_lead", "originatingleadid")}, "Originating Lead"),
    ], state=states({0: "Open", 1: "Won", 2: "Lost"},
                    {1: ("In Progress", 0), 2: ("On Hold", 0), 3: ("Won", 1), 4: ("Canceled", 2), 5: ("Out-Sold", 2)}))

    b.table("incident", "incidents", "incidentid", "title", 112, "Case", "Cases", [
        S("title", 200, "Case Title"), S("ticketnumber", 100, "Case Number"), M("description", 2000, "Description"),
        P("caseorigincode", origin, "Origin"), P("prioritycode", {1: "High", 2: "Normal", 3: "Low"}, "Priority"),
        P("casetypecode", {1: "Question", 2: "Problem", 3: "Request"}, "Case Type"),
        P("severitycode", {1: "Default Value"}, "Severity"), B("escalated", "Is Escalated"),
        DT("followupby", "Follow Up By"), customer("customerid", "incident", "Customer"),
        L("primarycontactid", {"contact": ("contact_as_primary_contact", "primarycontactid")}, "Contact"),
        L("productid", {"product": ("product_incidents", "productid")}, "Product"),
    ], state=states({0: "Active", 1: "Resolved", 2: "Cancelled"},
                    {1: ("In Progress", 0), 2: ("On Hold", 0), 3: ("Waiting for Details", 0), 4: ("Researching", 0),
                     5: ("Problem Solved", 1), 1000: ("Information Provided", 1), 6: ("Cancelled", 2), 2000: ("Merged", 2)}),
        keys=[("ticketnumber_key", ["ticketnumber"])])

    activity_cols = lambda: [  # noqa: E731
        S("subject", 200, "Subject", "ApplicationRequired"), M("description", 2000, "Description"),
        DT("scheduledstart", "Start Date"), DT("scheduledend", "Due Date"), DT("actualend", "Actual End"),
        I("actualdurationminutes", "Duration", 0, 2147483647), P("prioritycode", PRIORITY, "Priority"),
        EN("activitytypecode", "Activity Type")]
    b.table("activitypointer", "activitypointers", "activityid", "subject", 4200, "Activity", "Activities",
            [*activity_cols(), regarding("activitypointer", "ActivityPointers")], activity=True,
            state=states({0: "Open", 1: "Completed", 2: "Canceled", 3: "Scheduled"},
                         {1: ("Open", 0), 2: ("Completed", 1), 3: ("Canceled", 2), 4: ("Scheduled", 3)}))
    b.table("task", "tasks", "activityid", "subject", 4212, "Task", "Tasks",
            [*activity_cols(), I("percentcomplete", "Percent Complete", 0, 100), S("category", 250, "Category"),
             regarding("task", "Tasks")], activity=True,
            state=ACTIVITY({2: ("Not Started", 0), 3: ("In Progress", 0), 4: ("Waiting on someone else", 0),
                            7: ("Deferred", 0), 5: ("Completed", 1), 6: ("Canceled", 2)}))
    b.table("phonecall", "phonecalls", "activityid", "subject", 4210, "Phone Call", "Phone Calls",
            [*activity_cols(), S("phonenumber", 200, "Phone Number"), B("directioncode", "Direction", "Outgoing", "Incoming"),
             regarding("phonecall", "Phonecalls")], activity=True, schema_name="PhoneCall",
            state=ACTIVITY({1: ("Open", 0), 2: ("Made", 1), 4: ("Received", 1), 3: ("Canceled", 2)}))
    b.table("email", "emails", "activityid", "subject", 4202, "Email", "Email Messages",
            [*activity_cols(), S("sender", 250, "From"), S("torecipients", 500, "To"), B("directioncode", "Direction", "Outgoing", "Incoming"),
             regarding("email", "Emails")], activity=True,
            state=ACTIVITY({1: ("Draft", 0), 8: ("Failed", 0), 2: ("Completed", 1), 3: ("Sent", 1), 4: ("Received", 1),
                            6: ("Pending Send", 1), 7: ("Sending", 1), 5: ("Canceled", 2)}))
    b.table("appointment", "appointments", "activityid", "subject", 4201, "Appointment", "Appointments",
            [*activity_cols(), S("location", 200, "Location"), B("isalldayevent", "All Day Event"),
             regarding("appointment", "Appointments")], activity=True,
            state=states({0: "Open", 1: "Completed", 2: "Canceled", 3: "Scheduled"},
                         {1: ("Free", 0), 2: ("Tentative", 0), 3: ("Completed", 1), 4: ("Canceled", 2), 5: ("Busy", 3),
                          6: ("Out of Office", 3)}))

    sales = lambda kind, number, extra: [  # noqa: E731
        S("name", 300, "Name"), S(number, 100, kind + " ID"), M("description", 2000, "Description"),
        Mny("totalamount", "Total Amount"), Mny("totaltax", "Total Tax"), Mny("discountamount", "Order Discount Amount"),
        DT("datedelivered", "Date Delivered", date_only=True), customer("customerid", kind.lower().replace(" ", ""), "Potential Customer"),
        *extra]
    b.table("quote", "quotes", "quoteid", "name", 1084, "Quote", "Quotes", sales("Quote", "quotenumber", [
        L("opportunityid", {"opportunity": ("opportunity_quotes", "opportunityid")}, "Opportunity")]),
        state=states({0: "Draft", 1: "Active", 2: "Won", 3: "Closed"},
                     {1: ("In Progress", 0), 2: ("In Progress", 1), 3: ("Open", 1), 4: ("Won", 2), 5: ("Lost", 3),
                      6: ("Canceled", 3), 7: ("Revised", 3)}), keys=[("quotenumber_key", ["quotenumber"])])
    b.table("salesorder", "salesorders", "salesorderid", "name", 1088, "Order", "Orders", sales("Order", "ordernumber", [
        L("opportunityid", {"opportunity": ("opportunity_sales_orders", "opportunityid")}, "Opportunity"),
        L("quoteid", {"quote": ("quote_orders", "quoteid")}, "Quote")]), schema_name="SalesOrder",
        state=states({0: "Active", 1: "Submitted", 2: "Canceled", 3: "Fulfilled", 4: "Invoiced"},
                     {1: ("New", 0), 2: ("Pending", 0), 3: ("In Progress", 1), 4: ("No Money", 2), 100001: ("Complete", 3),
                      100002: ("Partial", 3), 100003: ("Invoiced", 4)}), keys=[("ordernumber_key", ["ordernumber"])])
    b.table("invoice", "invoices", "invoiceid", "name", 1090, "Invoice", "Invoices", sales("Invoice", "invoicenumber", [
        L("salesorderid", {"salesorder": ("order_invoices", "salesorderid")}, "Order"),
        L("opportunityid", {"opportunity": ("opportunity_invoices", "opportunityid")}, "Opportunity"),
        DT("duedate", "Due Date", date_only=True)]),
        state=states({0: "Active", 1: "Closed (deprecated)", 2: "Paid", 3: "Canceled"},
                     {1: ("New", 0), 2: ("Partially Shipped", 0), 4: ("Billed", 0), 5: ("Booked (applies to services)", 0),
                      6: ("Installed (applies to services)", 0), 100001: ("Complete", 2), 100002: ("Partial", 2),
                      100003: ("Canceled", 3)}), keys=[("invoicenumber_key", ["invoicenumber"])])
    b.table("product", "products", "productid", "name", 1024, "Product", "Products", [
        S("name", 100, "Name"), S("productnumber", 100, "Product ID", "ApplicationRequired"), M("description", 2000, "Description"),
        Mny("price", "List Price"), Mny("standardcost", "Standard Cost"), Dec("quantityonhand", "Quantity On Hand", 2),
        I("quantitydecimal", "Decimals Supported", 0, 5),
        P("producttypecode", {1: "Sales Inventory", 2: "Miscellaneous Charges", 3: "Services", 4: "Flat Fees"}, "Product Type"),
    ], ownership="OrganizationOwned", keys=[("productnumber_key", ["productnumber"])],
        state=states({0: "Active", 1: "Retired", 2: "Draft", 3: "Under Revision"},
                     {1: ("Active", 0), 2: ("Retired", 1), 0: ("Draft", 2), 3: ("Under Revision", 3)}))
    b.table("queue", "queues", "queueid", "name", 2020, "Queue", "Queues", [
        S("name", 200, "Name"), S("emailaddress", 100, "Incoming Email"), M("description", 2000, "Description"),
        P("queueviewtype", {0: "Public", 1: "Private"}, "Type"),
    ], state=ACTIVE())
    b.table("queueitem", "queueitems", "queueitemid", "title", 2029, "Queue Item", "Queue Items", [
        S("title", 300, "Title"), DT("enteredon", "Entered Queue"), EN("objecttypecode", "Type"),
        L("queueid", {"queue": ("queue_entries", "queueid")}, "Queue"),
        L("objectid", {t: (f"{t.capitalize()}_QueueItem", f"objectid_{t}") for t in ("task", "email", "phonecall", "appointment", "incident")},
          "Object"),
        L("workerid", {"systemuser": ("systemuser_queueitem_workerid", "workerid_systemuser")}, "Worked By"),
    ], ownership="OrganizationOwned", state=ACTIVE())
    b.table("systemuser", "systemusers", "systemuserid", "fullname", 8, "User", "Users", [
        S("fullname", 200, "Full Name"), S("firstname", 64, "First Name"), S("lastname", 64, "Last Name"),
        S("domainname", 1024, "User Name"), S("internalemailaddress", 100, "Primary Email"), S("title", 128, "Title"),
        G("azureactivedirectoryobjectid", "Azure AD Object ID"), G("applicationid", "Application ID"),
        B("isdisabled", "Status", "Disabled", "Enabled"),
        P("accessmode", {0: "Read-Write", 1: "Administrative", 2: "Read", 3: "Support User", 4: "Non-interactive", 5: "Delegated Admin"}, "Access Mode"),
        L("businessunitid", {"businessunit": ("business_unit_system_users", "businessunitid")}, "Business Unit"),
    ], ownership="BusinessOwned", keys=[("aadobjectid_key", ["azureactivedirectoryobjectid"])])
    b.table("team", "teams", "teamid", "name", 9, "Team", "Teams", [
        S("name", 160, "Team Name"), M("description", 2000, "Description"), G("azureactivedirectoryobjectid", "Azure AD Object ID"),
        P("teamtype", {0: "Owner", 1: "Access", 2: "Security Group", 3: "Office Group"}, "Team Type"), B("isdefault", "Is Default"),
        L("businessunitid", {"businessunit": ("business_unit_teams", "businessunitid")}, "Business Unit"),
        L("administratorid", {"systemuser": ("lk_teambase_administratorid", "administratorid")}, "Administrator"),
    ], ownership="BusinessOwned")
    b.table("businessunit", "businessunits", "businessunitid", "name", 10, "Business Unit", "Business Units", [
        S("name", 160, "Name"), S("divisionname", 100, "Division"), S("websiteurl", 200, "Website"), B("isdisabled", "Is Disabled"),
        L("parentbusinessunitid", {"businessunit": ("business_unit_parent_business_unit", "parentbusinessunitid")}, "Parent Business"),
    ], ownership="BusinessOwned")
    b.table("transactioncurrency", "transactioncurrencies", "transactioncurrencyid", "currencyname", 9105, "Currency", "Currencies", [
        S("currencyname", 100, "Currency Name"), S("isocurrencycode", 5, "Currency Code"), S("currencysymbol", 10, "Currency Symbol"),
        Dec("exchangerate", "Exchange Rate", 10), I("currencyprecision", "Currency Precision", 0, 4),
    ], ownership="OrganizationOwned", state=ACTIVE(), schema_name="TransactionCurrency",
        keys=[("isocurrencycode_key", ["isocurrencycode"])])
    b.table("annotation", "annotations", "annotationid", "subject", 5, "Note", "Notes", [
        S("subject", 500, "Title"), M("notetext", 100000, "Description"), S("filename", 255, "File Name"),
        S("mimetype", 256, "Mime Type"), M("documentbody", 1073741823, "Document"), I("filesize", "File Size (Bytes)", 0),
        B("isdocument", "Is Document", "Attachment", "Note"), EN("objecttypecode", "Object Type"),
        L("objectid", {t: (f"{t.capitalize()}_Annotation", f"objectid_{t}") for t in
                       ("account", "contact", "lead", "opportunity", "incident", "task", "email", "phonecall", "appointment")}, "Regarding"),
    ], change_tracking=False)
    b.table("serviceendpoint", "serviceendpoints", "serviceendpointid", "name", 4618, "Service Endpoint", "Service Endpoints", [
        S("name", 256, "Name"), M("description", 2000, "Description"), S("url", 2000, "Url Address"),
        S("namespaceaddress", 255, "Namespace Address"), S("path", 160, "Path"), S("solutionnamespace", 160, "Solution Namespace"),
        M("authvalue", 4000, "Auth Value"),
        P("contract", {1: "OneWay", 2: "Queue", 3: "Rest", 4: "TwoWay", 5: "Topic", 6: "Queue (Persistent)", 7: "Event Hub",
                       8: "Webhook", 9: "Event Grid", 10: "Managed Data Lake"}, "Contract"),
        P("authtype", {1: "ACS", 2: "SAS Key", 3: "SAS Token", 4: "Webhook Key", 5: "Http Header", 6: "Http Query String",
                       7: "Connection String", 8: "Access Key", 9: "Managed Identity"}, "Specify the authentication type"),
        P("messageformat", {1: ".NET Binary", 2: "JSON", 3: "XML"}, "Message Format"),
        P("userclaim", {1: "None", 2: "UserId", 3: "UserInfo"}, "User Information Sent"),
        P("connectionmode", {1: "Normal", 2: "Federated"}, "Connection Mode"),
    ], ownership="OrganizationOwned", schema_name="ServiceEndpoint")
    b.table("sdkmessage", "sdkmessages", "sdkmessageid", "name", 4606, "Sdk Message", "Sdk Messages", [
        S("name", 256, "Name"), S("categoryname", 25, "Category Name"), B("isprivate", "Is Private"),
        B("isactive", "Is Active"), B("autotransact", "Auto Transact"),
    ], ownership="OrganizationOwned", change_tracking=False, schema_name="SdkMessage")
    b.table("sdkmessagefilter", "sdkmessagefilters", "sdkmessagefilterid", "name", 4607, "Sdk Message Filter", "Sdk Message Filters", [
        S("name", 256, "Name"), EN("primaryobjecttypecode", "Primary Object Type Code"), EN("secondaryobjecttypecode", "Secondary Object Type Code"),
        B("iscustomprocessingstepallowed", "Custom Processing Step Allowed"), B("isvisible", "Is Visible"),
        L("sdkmessageid", {"sdkmessage": ("sdkmessageid_sdkmessagefilter", "sdkmessageid")}, "SDK Message"),
    ], ownership="OrganizationOwned", change_tracking=False, schema_name="SdkMessageFilter")
    b.table("sdkmessageprocessingstep", "sdkmessageprocessingsteps", "sdkmessageprocessingstepid", "name", 4608,
            "Sdk Message Processing Step", "Sdk Message Processing Steps", [
        S("name", 256, "Name"), M("description", 256, "Description"), M("configuration", 1073741823, "Configuration"),
        S("filteringattributes", 100000, "Filtering Attributes"), I("rank", "Execution Order", 0),
        P("stage", {5: "Initial Pre-operation (For internal use only)", 10: "Pre-validation", 15: "Internal Pre-operation Before External Plugins (For internal use only)",
                    20: "Pre-operation", 30: "Main Operation (For internal use only)", 40: "Post-operation", 50: "Post-operation (Deprecated)"},
          "Execution Stage"),
        P("mode", {0: "Synchronous", 1: "Asynchronous"}, "Execution Mode"),
        P("supporteddeployment", {0: "Server Only", 1: "Microsoft Dynamics 365 Client for Outlook Only", 2: "Both"}, "Deployment"),
        B("asyncautodelete", "Asynchronous Automatic Delete"),
        L("sdkmessageid", {"sdkmessage": ("sdkmessageid_sdkmessageprocessingstep", "sdkmessageid")}, "SDK Message"),
        L("sdkmessagefilterid", {"sdkmessagefilter": ("sdkmessagefilterid_sdkmessageprocessingstep", "sdkmessagefilterid")}, "Sdk Message Filter"),
        L("eventhandler", {"serviceendpoint": ("serviceendpoint_sdkmessageprocessingstep", "eventhandler_serviceendpoint")}, "Event Handler"),
    ], state=states({0: "Enabled", 1: "Disabled"}, {1: ("Enabled", 0), 2: ("Disabled", 1)}),
        change_tracking=False, schema_name="SdkMessageProcessingStep")
    b.table("organization", "organizations", "organizationid", "name", 1019, "Organization", "Organizations", [
        S("name", 160, "Organization Name"), S("uniquename", 100, "Unique Name"), S("version", 48, "Version"),
        I("languagecode", "Language"), I("timezoneruleversionnumber", "Time Zone Rule Version Number"),
        B("isauditenabled", "Is Auditing Enabled"),
        L("basecurrencyid", {"transactioncurrency": ("basecurrency_organization", "basecurrencyid")}, "Currency"),
    ], ownership="None", change_tracking=False)

    for rel in b.pending:
        b.schema.add_relationship(rel)
    b.schema.add_relationship(ManyToMany("accountleads_association", "account", "lead", "accountleads"))
    b.schema.add_relationship(ManyToMany("contactleads_association", "contact", "lead", "contactleads"))
    b.schema.add_relationship(ManyToMany("teammembership_association", "systemuser", "team", "teammembership"))
    b.schema.link()
    return b.schema


def seed_rows(store, mode: str | None) -> None:
    """Insert the org, its users and currency; with mode 'demo' also messages and sample data."""
    system = defaults.APP_USER_ID
    as_system = dict(user=system)
    store.insert("transactioncurrency", {
        "transactioncurrencyid": USD_ID, "currencyname": "US Dollar", "isocurrencycode": "USD",
        "currencysymbol": "$", "exchangerate": 1.0, "currencyprecision": 2, "statecode": 0, "statuscode": 1}, **as_system)
    store.insert("businessunit", {"businessunitid": defaults.BUSINESS_UNIT_ID, "name": defaults.ORGANIZATION_NAME}, **as_system)
    store.insert("organization", {
        "organizationid": defaults.ORGANIZATION_ID, "name": defaults.ORGANIZATION_NAME, "uniquename": "emulatedorg",
        "version": "9.2.24101.00000", "languagecode": 1033, "basecurrencyid": USD_ID}, **as_system)
    store.insert("systemuser", {
        "systemuserid": defaults.APP_USER_ID, "fullname": "# emulator-app", "firstname": "#", "lastname": "emulator-app",
        "domainname": f"{defaults.CLIENT_ID}@emulator.test", "applicationid": defaults.CLIENT_ID,
        "azureactivedirectoryobjectid": defaults.APP_USER_OBJECT_ID, "accessmode": 4, "isdisabled": False,
        "businessunitid": defaults.BUSINESS_UNIT_ID}, **as_system)
    first, last = defaults.USER_NAME.split(" ", 1)
    store.insert("systemuser", {
        "systemuserid": defaults.USER_ID, "fullname": defaults.USER_NAME, "firstname": first, "lastname": last,
        "domainname": defaults.USER_EMAIL, "internalemailaddress": defaults.USER_EMAIL,
        "azureactivedirectoryobjectid": defaults.USER_OBJECT_ID, "accessmode": 0, "isdisabled": False,
        "businessunitid": defaults.BUSINESS_UNIT_ID}, **as_system)
    store.insert("team", {"teamid": TEAM_ID, "name": defaults.ORGANIZATION_NAME, "teamtype": 0, "isdefault": True,
                          "businessunitid": defaults.BUSINESS_UNIT_ID, "administratorid": defaults.USER_ID}, **as_system)
    if mode != "demo":
        return
    for message in ("Create", "Update", "Delete", "Associate", "Disassociate", "Retrieve", "RetrieveMultiple"):
        message_id = store.insert("sdkmessage", {"name": message, "categoryname": "Create" if message == "Create" else message,
                                                 "isprivate": False, "isactive": True, "autotransact": True}, **as_system)["sdkmessageid"]
        if message in ("Create", "Update", "Delete"):
            for table in store.schema.tables.values():
                if table.ownership in ("UserOwned", "OrganizationOwned") and table.logical_name not in ("sdkmessage",):
                    store.insert("sdkmessagefilter", {
                        "name": f"{message} {table.logical_name}", "primaryobjecttypecode": table.logical_name,
                        "secondaryobjecttypecode": "none", "sdkmessageid": message_id, "isvisible": True,
                        "iscustomprocessingstepallowed": True}, **as_system)
    contoso = store.insert("account", {"name": "Contoso Ltd", "accountnumber": "ACC-001", "revenue": 5000000.0,
                                       "numberofemployees": 250, "accountcategorycode": 1, "industrycode": 7,
                                       "address1_city": "Redmond", "telephone1": "+1 425 555 0100"}, **as_system)
    fabrikam = store.insert("account", {"name": "Fabrikam Inc", "accountnumber": "ACC-002", "revenue": 1200000.0,
                                        "numberofemployees": 40, "accountcategorycode": 2, "industrycode": 12,
                                        "address1_city": "Seattle"}, **as_system)
    store.insert("account", {"name": "Adventure Works", "accountnumber": "ACC-003", "creditonhold": True,
                             "numberofemployees": 1200, "address1_city": "Bellevue"}, **as_system)
    nancy = store.insert("contact", {"firstname": "Nancy", "lastname": "Anderson", "emailaddress1": "nancy@contoso.example",
                                     "jobtitle": "Purchasing Manager", "parentcustomerid": contoso["accountid"],
                                     "parentcustomeridtype": "account"}, **as_system)
    store.insert("contact", {"firstname": "Maria", "lastname": "Campbell", "emailaddress1": "maria@fabrikam.example",
                             "jobtitle": "CTO", "parentcustomerid": fabrikam["accountid"], "parentcustomeridtype": "account"}, **as_system)
    store.update("account", contoso["accountid"], {"primarycontactid": nancy["contactid"]}, **as_system)
    store.insert("task", {"subject": "Call Nancy about the renewal", "prioritycode": 2, "regardingobjectid": contoso["accountid"],
                          "regardingobjectidtype": "account", "activitytypecode": "task"}, **as_system)
