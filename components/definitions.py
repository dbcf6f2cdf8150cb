"""What a component is made of: actions, triggers, connections and data sources.

Each is a class with a permanent ``key`` (``dynamics365.query_entities``), a ``label``, a
description (the docstring's first paragraph unless ``description`` is set), an ``Inputs``
model whose published JSON Schema is both the form and the validation rule, and behaviour in
``async`` methods. Plugins hand these classes to the registry through the hooks in
:mod:`d365_components.hookspecs`; the registry checks them (see :mod:`d365_components.registry`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from d365_components.errors import ConnectionConfigError
from d365_components.inputs import InputModel, publish_schema
from d365_components.redaction import get_logger

if TYPE_CHECKING:
    from d365_components.connections.client import WebApiClient

__all__ = [
    "DEFAULT_MAX_BODY",
    "Action",
    "Component",
    "Connection",
    "Context",
    "DataSource",
    "Definition",
    "Kind",
    "PollingTrigger",
    "PollResult",
    "Trigger",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookTrigger",
]

JSON = Any


@dataclass(frozen=True)
class Component:
    """Display data of a component: what a designer sees on its card."""

    key: str
    label: str
    description: str
    icon: str = ""
    documentation_url: str = ""
    version: str = ""
    category: str = ""


class Kind(StrEnum):
    """What a definition is; the value is what manifests and ``d365 describe`` show."""

    definition = "definition"
    action = "action"
    trigger = "trigger"
    connection = "connection"
    data_source = "data_source"


class Definition:
    """Common ground of actions, triggers, connections and data sources."""

    kind: ClassVar[Kind] = Kind.definition
    key: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str] = ""
    Inputs: ClassVar[type[InputModel]] = InputModel
    #: JSON Schema of the output; a pydantic model may be given instead as ``Output``.
    output_schema: ClassVar[dict[str, Any] | None] = None
    Output: ClassVar[type[BaseModel] | None] = None
    #: an example of the output, validated against the output schema by the contract tests.
    example: ClassVar[JSON] = None
    #: set to the replacement's key (or a reason) when a definition is deprecated; keys are permanent.
    deprecated: ClassVar[str | None] = None
    #: a section heading among the component's definitions (Records, Queries, Metadata...).
    group: ClassVar[str] = ""
    #: False for definitions that work without Dataverse (e.g. building a filter expression).
    needs_connection: ClassVar[bool] = True
    #: rules on inputs that JSON Schema cannot say (input -> rule in words), published in the manifest;
    #: keep them rare: every other rule is in the input schema.
    checks: ClassVar[dict[str, str]] = {}

    @classmethod
    def component_key(cls) -> str:
        return cls.key.split(".", 1)[0]

    @classmethod
    def summary(cls) -> str:
        """The description, or the docstring's first paragraph."""
        if cls.description:
            return cls.description
        doc = inspect.cleandoc(vars(cls).get("__doc__") or "")  # own docstring, never the base's
        return doc.split("\n\n", 1)[0].replace("\n", " ").strip()

    @classmethod
    def input_schema(cls) -> dict[str, Any]:
        return _published_inputs(cls)

    @classmethod
    def output_json_schema(cls) -> dict[str, Any] | None:
        if cls.output_schema is not None:
            return cls.output_schema
        if cls.Output is not None:
            return publish_schema(cls.Output)
        return None


_published: dict[type[Definition], dict[str, Any]] = {}


def _published_inputs(cls: type[Definition]) -> dict[str, Any]:
    """The input schema, built once per class (a dict, not functools.cache: mypy cannot hash a class)."""
    if cls not in _published:
        _published[cls] = publish_schema(cls.Inputs, title=cls.label)
    return _published[cls]


@dataclass
class Context:
    """What ``perform`` gets besides its inputs: the open Web API client, a logger, and hooks.

    Actions never see credentials: ``client`` is already authenticated by the connection.
    """

    client: WebApiClient | None
    connection: Connection | None = None
    log: logging.Logger = field(default_factory=lambda: get_logger("d365_components.run"))
    #: ``progress(done, total)`` for long runs (bulk loads); the CLI draws a bar from it.
    progress: Callable[[int, int | None], None] | None = None
    #: state a host keeps for a deployed flow (webhook registrations, resume points...).
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def web_api(self) -> WebApiClient:
        """``client`` for definitions that need Dataverse: a plain error when run without a connection."""
        if self.client is None:
            raise ConnectionConfigError(
                "This step needs a connection to Dynamics 365 (see `d365 describe dynamics365.oauth2_client_credentials`)."
            )
        return self.client

    def report(self, done: int, total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(done, total)


class Action(Definition):
    """One operation a flow step can run; ``perform`` returns JSON-serializable data."""

    kind = Kind.action

    async def perform(self, ctx: Context, inputs: Any) -> JSON:
        raise NotImplementedError


class Connection(Definition):
    """Credentials and the Web API client they open (one pool per connection, reused).

    Subclasses implement :meth:`open_client` and :meth:`test`. ``self.inputs`` holds the
    validated inputs; secrets in them are ``SecretStr`` and never printed.
    """

    kind = Kind.connection

    def __init__(self, inputs: Any) -> None:
        self.inputs = inputs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r})"

    def open_client(self) -> WebApiClient:
        """The connection's Web API client (created once, then the same object)."""
        raise NotImplementedError

    async def test(self) -> dict[str, Any]:
        """Check the connection end to end; return who we are or raise a plain-words error."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the client's connection pool."""


class DataSource(Definition):
    """Fills a dropdown in a generated form: returns ``[{"label", "value"}]`` choices."""

    kind = Kind.data_source
    output_schema = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["label", "value"],
            "properties": {
                "label": {"type": "string"},
                "value": {},
                "description": {"type": "string"},
            },
        },
    }

    async def fetch(self, ctx: Context, inputs: Any) -> list[dict[str, Any]]:
        raise NotImplementedError


#: the largest webhook body a host reads unless the trigger's inputs set ``maxBodyBytes``.
#: Dataverse cuts payloads at 256 KB; a few MB leaves room for other senders and test tools.
DEFAULT_MAX_BODY = 4 * 1024 * 1024

_SENSITIVE = frozenset({"code", "authorization", "cookie", "x-functions-key", "api-key", "key"})


@dataclass(frozen=True)
class WebhookRequest:
    """An incoming HTTP request as a host hands it to a webhook trigger."""

    method: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        # the webhook key travels in ?code= (or a header): never show it
        def masked(items: dict[str, str]) -> dict[str, str]:
            return {k: "[REDACTED]" if k.lower() in _SENSITIVE else v for k, v in items.items()}

        return (
            f"WebhookRequest(method={self.method!r}, headers={masked(self.headers)!r}, "
            f"query={masked(self.query)!r}, body=<{len(self.body)} bytes>)"
        )


@dataclass
class WebhookResponse:
    """What the host answers, plus the events (if any) the request carried."""

    status: int
    body: JSON = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PollResult:
    """Events since the cursor, and the cursor the host persists for the next run."""

    events: list[dict[str, Any]]
    cursor: JSON


class Trigger(Definition):
    """Starts a flow. ``mode`` is ``webhook`` (Dataverse calls us) or ``polling`` (we ask)."""

    kind = Kind.trigger
    mode: ClassVar[str] = ""


class WebhookTrigger(Trigger):
    """Receives Dataverse service-endpoint calls, and registers them on deploy."""

    mode = "webhook"

    async def handle(self, ctx: Context, inputs: Any, request: WebhookRequest) -> WebhookResponse:
        raise NotImplementedError

    async def deploy(self, ctx: Context, inputs: Any, webhook_url: str) -> dict[str, Any]:
        """Register the webhook in Dataverse; return state the host keeps for :meth:`remove`."""
        raise NotImplementedError

    async def remove(self, ctx: Context, inputs: Any, state: dict[str, Any]) -> None:
        raise NotImplementedError

    async def verify(self, ctx: Context, inputs: Any, webhook_url: str) -> dict[str, Any]:
        """Report what is registered and whether it matches these inputs."""
        raise NotImplementedError


class PollingTrigger(Trigger):
    """Asks Dataverse for changes since a cursor the host persists between runs."""

    mode = "polling"

    async def poll(self, ctx: Context, inputs: Any, cursor: JSON) -> PollResult:
        raise NotImplementedError
