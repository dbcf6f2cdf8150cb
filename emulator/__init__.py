"""An embedded Dataverse: the Web API over HTTPS and an OpenID token endpoint, backed by SQLite.

    from d365_components.emulator import Emulator
    with Emulator() as emulator:           # https://127.0.0.1:<port>, a fresh seeded org
        ...

Module map, lowest layer first; a module imports only from its own layer or the layers listed before
it, never from the library (`d365_components.` outside `d365_components.emulator`); imports sit at
module level (tests/emulator/test_layering.py checks all three):

- `defaults`: the fixed ids of the emulated org (tenant, client, users, business unit, currency).
- `protocol/`: the wire vocabulary every layer shares: `errors` (Dataverse error codes and bodies),
  `literals` (OData literals and URL segments), `annotations` (formatted-value and lookup annotation
  names), `asgi` (holding an app's answer back, for middlewares that must see it whole).
- `storage/`: the table model and its SQLite store: `schema` (tables, columns, relationships,
  option sets), `store` (SQL, row stamps, change listeners), `columns` (typed column constructors:
  `string_column`, `money_column`, ...), `table_builder` (system columns and lookup
  relationships), `fresh_org` (a fresh org's 38 standard tables, read from the facts in
  `fresh_org.json`), `standard_tables` (those plus the emulator's system tables), `seed` (the seed
  profiles none/fresh/demo: the rows a new store starts with, and the demo's keys and column), `system_jobs` (asyncoperation and
  bulkdeleteoperation), `time_limit` (the SQL time limit of a request).
- `request/`: `context` (the request context `Ctx` every handler gets, and its `Reply`).
- `query/`: query languages compiled to parameterized SQL: `filter_grammar`, `filter_values` and
  `filter_compiler` (OData $filter), `query_options` ($select, $orderby, $expand, $top), `paging`
  (keyset $skiptoken), `fetchxml_parse`, `fetchxml_sql` and `fetchxml_plan` (FetchXML), `aggregate` ($apply),
  `sql` (the `?sql=` subset), `query_expression` (a QueryExpression's criteria, for BulkDelete),
  `complexity` (queries too complex to run are refused).
- `records/`: entity-set requests: `handler` (routing under `/accounts...`), `rows` (keys and
  references), `representation` (rows as JSON, annotations, $expand), `read`, `values` (JSON
  values to storage), `write` (create, update, upsert, delete, @odata.bind, deep insert),
  `navigation` (navigation properties and $ref), `files` (file and image columns), `images`
  (image thumbnails), `read_hooks` (work before a read: values that move with time),
  `fetchxml` (running `?fetchXml=`), `sql_query` (running `?sql=`), `query_audit` (the system query options
  each request shape accepts).
- `metadata/`: `csdl` (service document, $metadata), `shapes` (metadata objects as JSON),
  `entity_sets` (EntityDefinitions, RelationshipDefinitions, GlobalOptionSetDefinitions),
  `dict_query` ($select/$expand/$filter over metadata), `customization` (new columns, tables,
  relationships; CreateEntities), `schema_removal` (deleting tables, columns, relationships), `keys`
  (alternate keys and their index job), `metadata_changes` (RetrieveMetadataChanges, version stamps).
- `messages/`: functions and actions: `registry` (name -> handler), `crm` (QualifyLead,
  Win/LoseOpportunity, CloseIncident), `crm_queues`, `crm_rollups` (CalculateRollupField),
  `crm_tables` (the tables they need), `process_flows` (business process flow instances,
  RetrieveActivePath, RetrieveProcessInstances), `sla` (SLA KPI instances of cases, their status over time), `routing` (routing rule tables,
  ApplyRoutingRule, RemoveFromQueue), `quote_to_cash` (line and header totals, WinQuote, CloseQuote,
  ConvertQuoteToSalesOrder, ConvertSalesOrderToInvoice), `crm_parameters` (their shared parameter readers), `bulk`
  (CreateMultiple, UpdateMultiple, UpsertMultiple; DeleteMultiple refused), `file_blocks` (the file-block
  messages), `bulk_delete` (BulkDelete as a system job), `record_counts` (RetrieveTotalRecordCount),
  `sdk_messages` (sdkmessage/sdkmessagefilter rows from the table model), `built_in` (the explicit list
  of built-in message modules and the tables they need).
- `identity/`: `provider` (the OpenID provider: discovery, authorize and token endpoints, signing
  keys, token verification), `oauth` (errors in Entra's shape, grants, PKCE, redirects).
- `limits/`: `faults` (fault injection), `protection` (service protection limits), `request_size`
  (431/413 for oversized headers and bodies), `latency` (server
  time per request and per written row, a sleep, for benchmarks).
- `events/`: what happens after a write: `webhooks` (service endpoints and steps, deliveries),
  `webhook_auth` (endpoint authentication, secrets kept out of errors), `webhook_tables` (step
  images, system jobs), `remote_context` (the RemoteExecutionContext a webhook receives),
  `change_tracking` (delta links).
- `web_api/`: the HTTP surface: `app` (the ASGI app, routing a Web API request to its sub-system),
  `batch` ($batch).
- `extensions`: wraps the app in the events and limits middleware (`EmulatorFeatures`).
- `tls`: the local certificate authority and server certificate.
- `server`: `Emulator` (the emulator in a background thread) and the standalone server of `d365 emulator`.
"""

from d365_components.emulator.server import Emulator

__all__ = ["Emulator"]
