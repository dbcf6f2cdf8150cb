"""``dynamics365.webhook``: Dataverse calls us when rows of a table are created, updated or deleted.

Deploying the trigger registers it in Dataverse (a serviceendpoint with the shared key and one
processing step per message; see :mod:`d365_components.triggers.registration`), reconciled by
name so a second deploy never duplicates it. Each delivery is checked (method, key in constant
time, size, JSON), parsed (:mod:`d365_components.triggers.payload`) and answered; nothing a
caller sends can make :meth:`WebhookTrigger.handle` raise — bad requests get a 4xx and a plain
message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import traceback
import weakref
from typing import Any, Literal

from pydantic import SecretStr

from d365_components.connections.client import WebApiClient
from d365_components.connections.odata import quote
from d365_components.conventions import COLUMNS, NAME_PATTERN, TABLE_DEFINITIONS
from d365_components.definitions import (
    DEFAULT_MAX_BODY,
    Context,
    WebhookRequest,
    WebhookResponse,
    WebhookTrigger,
)
from d365_components.errors import D365Error
from d365_components.inputs import InputField, InputModel
from d365_components.redaction import redact, register_secret
from d365_components.triggers import registration
from d365_components.triggers.payload import PayloadError, parse_event

__all__ = ["DataverseWebhook", "default_name", "registration_for"]

MESSAGES = ("Create", "Update", "Delete")
Message = Literal["Create", "Update", "Delete"]
#: a table name, or * for any table
_TABLE_OR_ANY = rf"^(?:\*|{NAME_PATTERN[1:-1]})$"
_PROBES = {"url_validation", "heartbeat"}
#: columns every save rewrites; a change to them alone is no change to the row
_BOOKKEEPING = {"modifiedon", "modifiedby", "modifiedonbehalfby", "versionnumber", "overriddencreatedon"}


class DataverseWebhook(WebhookTrigger):
    """Starts a flow when Dataverse creates, updates or deletes a row, with old and new values.

    Registers itself in Dataverse on deploy (a webhook service endpoint and one step per
    message, never duplicated) and removes itself on delete; checks the shared key on every call.
    """

    key = "dynamics365.webhook"
    label = "When a row is created, updated or deleted (webhook)"
    group = "Triggers"

    class Inputs(InputModel):
        entity_type: str = InputField(
            title="Table",
            description=(
                "The table whose changes start the flow: its logical name (account) or entity set name "
                "(accounts), or * for any table — then every delivery with the webhook key is accepted, "
                "including subscriptions configured by hand in Dataverse."
            ),
            examples=["account", "contacts", "*"],
            data_source=TABLE_DEFINITIONS,
            min_length=1,
            pattern=_TABLE_OR_ANY,
        )
        more_tables: list[str] = InputField(
            [],
            title="More tables",
            description=(
                "Further tables whose changes start the flow too (logical or entity set names); deploy "
                "registers steps for each. Not needed with * (any table)."
            ),
            examples=[["contact", "leads"]],
            data_source=TABLE_DEFINITIONS,
            widget="list",
            schema={"items": {"type": "string", "pattern": NAME_PATTERN}},
        )
        messages: list[Message] = InputField(
            list(MESSAGES),
            title="Changes",
            description="Which changes start the flow: Create, Update, Delete (default: all three).",
            examples=[["Create", "Update"]],
            min_length=1,
            widget="list",
            enum_labels={"Create": "Created", "Update": "Updated", "Delete": "Deleted"},
        )
        webhook_key: SecretStr | None = InputField(
            None,
            title="Webhook key",
            description=(
                "A shared secret Dataverse sends as ?code= on every call. Recommended: without it "
                "anyone who learns the URL can start the flow with made-up rows. Use a long random value."
            ),
            min_length=1,
        )
        filtering_columns: list[str] | None = InputField(
            None,
            title="Only when these columns are in an update",
            description="Update only: the step fires when one of these columns is sent. Empty: any update.",
            examples=[["statuscode", "ownerid"]],
            data_source=COLUMNS,
            data_source_inputs={"table": "entityType"},
            widget="list",
        )
        include_old_values: bool = InputField(
            False,
            title="Include old values",
            description=(
                "Register a pre-image so update and delete events carry the row before the change, "
                "and 'changed' lists only columns whose value really changed."
            ),
        )
        only_real_changes: bool = InputField(
            False,
            title="Only when a value really changes",
            description=(
                "Update only: skip updates where the watched columns (the columns above, or any column) kept "
                "their values — Dataverse fires whenever a column is merely sent. Registers a pre-image."
            ),
        )
        include_post_image: bool = InputField(
            False,
            title="Include the row after the change",
            description="Register a post-image so create and update events carry the saved row's columns.",
        )
        synchronous: bool = InputField(
            False,
            title="Synchronous",
            description=(
                "Call the webhook inside the save: a failure or timeout of the flow's host then fails the "
                "user's save. Leave off unless the flow must run before the save completes."
            ),
            advanced=True,
            group="Advanced",
        )
        max_body_bytes: int = InputField(
            DEFAULT_MAX_BODY,
            title="Largest body accepted (bytes)",
            description="Bigger requests are refused with 413. Dataverse itself never sends more than 256 KB.",
            ge=1024,
            le=100 * 1024 * 1024,
            advanced=True,
            group="Advanced",
        )
        name: str | None = InputField(
            None,
            title="Registration name",
            description=(
                "Name of the service endpoint and prefix of its steps in Dataverse. Default: "
                "'d365-components <table> <hash of the webhook URL>', stable across deploys."
            ),
            max_length=100,
            advanced=True,
            group="Advanced",
        )

    output_schema = {
        "type": "object",
        "required": ["message", "table", "id", "attributes", "changed", "trimmed"],
        "properties": {
            "message": {"type": "string", "description": "Create, Update or Delete"},
            "table": {"type": ["string", "null"]},
            "id": {"type": ["string", "null"]},
            "attributes": {"type": "object", "description": "the columns sent in the request"},
            "preImage": {"type": ["object", "null"]},
            "postImage": {"type": ["object", "null"]},
            "changed": {"type": "object", "description": "{column: {old, new}}"},
            "hasOldValues": {"type": "boolean"},
            "user": {"type": ["string", "null"]},
            "userId": {"type": ["string", "null"]},
            "organization": {"type": "object"},
            "correlationId": {"type": ["string", "null"]},
            "operationId": {"type": ["string", "null"]},
            "depth": {"type": ["integer", "null"]},
            "stage": {"type": ["integer", "null"]},
            "mode": {"type": ["integer", "null"]},
            "operationCreatedOn": {"type": ["string", "null"]},
            "trimmed": {"type": "boolean", "description": "images were cut for size: re-read the row"},
        },
    }
    example = {
        "message": "Update",
        "table": "account",
        "id": "6d81597f-0f9f-e711-8122-000d3aa2331c",
        "attributes": {"name": "Contoso Ltd", "accountid": "6d81597f-0f9f-e711-8122-000d3aa2331c"},
        "preImage": {"name": "Contoso"},
        "postImage": None,
        "changed": {"name": {"old": "Contoso", "new": "Contoso Ltd"}},
        "hasOldValues": True,
        "user": "11bb11bb-cc22-dd33-ee44-55ff55ff55ff",
        "userId": "11bb11bb-cc22-dd33-ee44-55ff55ff55ff",
        "organization": {"id": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee", "name": "contoso", "domain": None},
        "correlationId": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "operationId": "4af10637-4ea2-e711-8122-000d3aa2331c",
        "depth": 1,
        "stage": 40,
        "mode": 1,
        "operationCreatedOn": "2017-09-26T07:04:08Z",
        "trimmed": False,
    }

    async def handle(self, ctx: Context, inputs: Any, request: WebhookRequest) -> WebhookResponse:
        try:
            answer = _answer(inputs, request)
            if answer.events and not await _watches(ctx, inputs, answer.events[0]["table"]):
                return WebhookResponse(status=200, body={"status": "ignored", "reason": "another table or message"})
            return answer
        except Exception:  # a bug must not become a 500 that Dataverse retries forever
            ctx.log.error("webhook body could not be parsed\n%s", redact(traceback.format_exc()))
            return _refuse(400, "The body could not be read as a Dataverse webhook call.")

    async def deploy(self, ctx: Context, inputs: Any, webhook_url: str) -> dict[str, Any]:
        client = _client(ctx)
        return await registration.deploy(client, await _by_logical_names(client, registration_for(inputs, webhook_url)))

    async def remove(self, ctx: Context, inputs: Any, state: dict[str, Any]) -> None:
        await registration.remove(_client(ctx), state)

    async def verify(self, ctx: Context, inputs: Any, webhook_url: str) -> dict[str, Any]:
        """Whether Dataverse holds exactly the registration a deploy would make, and what differs."""
        client = _client(ctx)
        return await registration.verify(client, await _by_logical_names(client, registration_for(inputs, webhook_url)))


def _named(inputs: Any) -> list[str]:
    """The tables the inputs name, lower-cased, first one first (``*``: any table)."""
    return list(dict.fromkeys(name.strip().lower() for name in [inputs.entity_type, *inputs.more_tables]))


#: logical names of the tables named so far, per client (freed with it)
_logical_names: weakref.WeakKeyDictionary[WebApiClient, dict[str, str]] = weakref.WeakKeyDictionary()


async def _logical_name(client: WebApiClient, name: str) -> str:
    """The logical name of a table named by entity set or logical name (read once per client)."""
    if name == registration.ANY_TABLE:
        return name
    known = _logical_names.setdefault(client, {})
    if name.lower() not in known:
        found = await client.get_json("EntityDefinitions", params={
            "$select": "LogicalName,EntitySetName",
            "$filter": f"LogicalName eq {quote(name.lower())} or EntitySetName eq {quote(name)}",
        })
        rows = found.get("value") or []
        if not rows:
            raise registration.RegistrationError(
                f"entityType: no table is named '{name}' (give its logical name such as 'account' or its "
                "entity set name such as 'accounts').")
        known[name.lower()] = str(rows[0]["LogicalName"])
    return known[name.lower()]


async def _by_logical_names(client: WebApiClient, wanted: registration.Registration) -> registration.Registration:
    """``wanted`` with every table as its logical name (steps are registered by logical name)."""
    tables = [await _logical_name(client, name) for name in wanted.tables]
    more = tuple(dict.fromkeys(t for t in tables[1:] if t != tables[0]))
    return dataclasses.replace(wanted, table=tables[0], more_tables=more)


async def _watches(ctx: Context, inputs: Any, table: str | None) -> bool:
    """Whether a delivery for ``table`` (a logical name) is one of the trigger's tables. Entity set
    names given as inputs are resolved through metadata when the trigger has a connection."""
    names = _named(inputs)
    if registration.ANY_TABLE in names or (table or "").lower() in names:
        return True
    if ctx.client is None or not table:
        return False
    try:
        return any([(await _logical_name(ctx.client, name)).lower() == table.lower() for name in names])
    except D365Error:
        return False


def _client(ctx: Context) -> WebApiClient:
    if ctx.client is None:
        raise registration.RegistrationError("Registering a webhook needs a Dynamics 365 connection.")
    return ctx.client


def default_name(table: str, webhook_url: str) -> str:
    """The registration's name when none is given: stable for one URL, so a redeploy finds it again."""
    digest = hashlib.sha256(webhook_url.encode()).hexdigest()[:10]
    return f"d365-components {table} {digest}"


def registration_for(inputs: Any, webhook_url: str) -> registration.Registration:
    """What Dataverse should hold for these inputs and URL (tables as named; deploy and verify
    turn entity set names into logical names)."""
    table, *more = _named(inputs)
    key = inputs.webhook_key.get_secret_value() if inputs.webhook_key is not None else None
    register_secret(key)
    return registration.Registration(
        name=inputs.name or default_name(table, webhook_url),
        url=webhook_url,
        key=key,
        table=table,
        more_tables=tuple(more) if table != registration.ANY_TABLE else (),
        messages=tuple(m for m in MESSAGES if m in inputs.messages),
        filtering_columns=tuple(sorted({c.strip().lower() for c in inputs.filtering_columns or [] if c.strip()})),
        pre_image=inputs.include_old_values or inputs.only_real_changes,
        post_image=inputs.include_post_image,
        synchronous=inputs.synchronous,
    )


def _refuse(status: int, message: str, headers: dict[str, str] | None = None) -> WebhookResponse:
    return WebhookResponse(status=status, body={"error": message}, headers=headers or {})


def _key_matches(expected: SecretStr | None, query: dict[str, str]) -> bool:
    if expected is None:
        return True
    register_secret(expected.get_secret_value())  # a host may call handle before (or without) deploy
    given = query.get("code")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.get_secret_value().encode("utf-8", "replace"))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "" or media == "application/json" or media.endswith("+json") or media == "text/json"


def _answer(inputs: Any, request: WebhookRequest) -> WebhookResponse:
    headers = {str(k).lower(): str(v) for k, v in (request.headers or {}).items()}
    if request.method.upper() != "POST":
        return _refuse(405, "Dataverse webhooks are POST requests.", {"Allow": "POST"})
    if not _key_matches(inputs.webhook_key, request.query or {}):
        return _refuse(401, "Missing or wrong webhook key (the 'code' query parameter).")
    body = request.body or b""
    if len(body) > inputs.max_body_bytes:
        return _refuse(413, f"The body is larger than {inputs.max_body_bytes} bytes.")
    request_name = headers.get("x-ms-dynamics-request-name", "")
    if request_name.lower() in _PROBES or not body.strip():
        return WebhookResponse(status=200, body={"status": "ok"})
    if not _is_json(headers.get("content-type", "")):
        return _refuse(415, "The body must be JSON (Content-Type: application/json).")
    try:
        decoded = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _refuse(400, "The body is not valid JSON.")
    try:
        event = parse_event(
            decoded,
            trimmed="x-ms-dynamics-msg-size-exceeded" in headers,
            organization_domain=headers.get("x-ms-dynamics-organization"),
        )
    except (PayloadError, RecursionError) as exc:
        return _refuse(400, f"Not a Dataverse webhook body: {exc}.")
    if event["message"] not in inputs.messages:
        return WebhookResponse(status=200, body={"status": "ignored", "reason": "another table or message"})
    wants_old = inputs.include_old_values or inputs.only_real_changes
    if wants_old and event["message"] != "Create" and event["preImage"] is None:
        event["trimmed"] = True  # the pre-image was registered but did not come: re-read the row
    if inputs.only_real_changes and event["message"] == "Update" and not event["trimmed"]:
        watched = {c.strip().lower() for c in inputs.filtering_columns or []} or set(event["changed"])
        if not (watched & set(event["changed"])) - _BOOKKEEPING:
            return WebhookResponse(status=200, body={"status": "ignored", "reason": "no value changed"})
    return WebhookResponse(status=200, body={"status": "received"}, events=[event])
