"""The Microsoft Dynamics 365 component: its display data and the hooks that register it.

The built-ins go through the same hooks as any third-party plugin, listed here by hand (as llm
and datasette list theirs): what ships is what this file names, and importing it loads only the
definitions' modules — no server (the webhook host lives in ``d365_components.webhook_host``).
A test checks that every definition class in actions/, triggers/ and connections/ is listed.
"""

from __future__ import annotations

from d365_components.actions import (
    activities,
    associations,
    batch,
    bulk,
    cases,
    data_sources,
    extract,
    fetchxml,
    files,
    filters,
    leads,
    metadata,
    opportunities,
    perform_action,
    pipeline,
    process_flows,
    queries,
    queues,
    quotes,
    raw_request,
    records,
    routing,
    sla,
    table_forms,
    users,
)
from d365_components.connections import oauth
from d365_components.definitions import Action, Component, Connection, DataSource, Trigger
from d365_components.hookspecs import Register, hookimpl
from d365_components.triggers import polling, webhook
from d365_components.version import __version__

__all__ = [
    "ACTIONS",
    "COMPONENT",
    "CONNECTIONS",
    "DATA_SOURCES",
    "TRIGGERS",
    "register_actions",
    "register_components",
    "register_connections",
    "register_data_sources",
    "register_triggers",
]

CONNECTIONS: tuple[type[Connection], ...] = (
    oauth.ClientCredentialsConnection,
    oauth.CertificateConnection,
    oauth.AuthCodeConnection,
)

ACTIONS: tuple[type[Action], ...] = (
    # rows
    records.CreateEntity,
    records.GetEntity,
    records.UpdateEntity,
    records.UpsertEntity,
    records.DeleteEntity,
    associations.AssociateEntities,
    associations.DisassociateEntities,
    files.UploadFile,
    files.DownloadFile,
    files.DeleteFile,
    files.AddNoteAttachment,
    files.GetNoteAttachments,
    # queries
    queries.QueryEntities,
    extract.ExtractChanges,
    fetchxml.RunFetchXmlQuery,
    filters.BuildFilterExpression,
    # many rows at once
    batch.RunBatchOperations,
    bulk.BulkCreate,
    bulk.BulkUpsert,
    # metadata
    metadata.ListEntityTypes,
    metadata.ListEntities,
    metadata.GetEntitiesMetadata,
    metadata.GetEntityMetadata,
    metadata.ListAttributes,
    metadata.QueryAttributes,
    metadata.GetAttribute,
    metadata.CreateAttribute,
    metadata.UpdateAttribute,
    metadata.GetChoiceOptions,
    table_forms.GetTableForm,
    # messages, users and raw requests
    perform_action.PerformUnboundAction,
    perform_action.PerformBoundAction,
    perform_action.CallFunction,
    users.GetCurrentUser,
    raw_request.RawRequest,
    # CRM workflows
    leads.QualifyLead,
    leads.DisqualifyLead,
    opportunities.WinOpportunity,
    opportunities.LoseOpportunity,
    pipeline.PipelineReport,
    quotes.CreateQuote,
    quotes.WinQuote,
    quotes.CloseQuote,
    quotes.ConvertQuoteToOrder,
    quotes.ConvertOrderToInvoice,
    process_flows.ListProcessFlows,
    process_flows.GetProcessFlow,
    process_flows.MoveProcessStage,
    process_flows.SetProcessFlowStatus,
    cases.ResolveCase,
    cases.CancelCase,
    queues.AddToQueue,
    queues.PickFromQueue,
    sla.SlaStatus,
    routing.ApplyRoutingRule,
    routing.ReleaseQueueItem,
    routing.RemoveQueueItem,
    routing.RecalculateRollup,
    activities.CreateActivity,
    activities.CompleteActivity,
)

TRIGGERS: tuple[type[Trigger], ...] = (
    webhook.DataverseWebhook,
    polling.ChangedRows,
)

DATA_SOURCES: tuple[type[DataSource], ...] = (
    data_sources.Tables,
    data_sources.TableDefinitions,
    data_sources.Columns,
    data_sources.ChoiceOptions,
    data_sources.Relationships,
    data_sources.Records,
    routing.RollupColumns,
    table_forms.TableForm,
)

COMPONENT = Component(
    key="dynamics365",
    label="Microsoft Dynamics 365",
    description=(
        "Create, read, update, upsert and delete Dataverse rows; query with OData and FetchXML; "
        "run batches and bulk loads; read and change metadata; run CRM workflows (leads, "
        "opportunities, cases, queues, activities); and start flows from webhooks or changes."
    ),
    icon=(
        "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 64 64'>"
        "<path fill='%23002050' d='M14 4l36 13v30L14 60z'/>"
        "<path fill='%230b53ce' d='M14 4l36 13-16 7-20-6z'/>"
        "<path fill='%232266e3' d='M50 47L14 60l20-14 16-29z'/></svg>"
    ),
    documentation_url="https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview",
    version=__version__,
    category="CRM",
)


@hookimpl
def register_components(register: Register) -> None:
    register(COMPONENT)


@hookimpl
def register_connections(register: Register) -> None:
    for definition in CONNECTIONS:
        register(definition)


@hookimpl
def register_actions(register: Register) -> None:
    for definition in ACTIONS:
        register(definition)


@hookimpl
def register_triggers(register: Register) -> None:
    for definition in TRIGGERS:
        register(definition)


@hookimpl
def register_data_sources(register: Register) -> None:
    for definition in DATA_SOURCES:
        register(definition)
