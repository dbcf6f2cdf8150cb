"""d365-components: Microsoft Dynamics 365 / Dataverse actions, triggers and connections for
integration platforms, with an embedded Dataverse emulator.

The public API for hosts and plugin authors is re-exported here; see README.md.
"""

# first: httpx is imported without its command-line tool (see the module)
import d365_components.httpx_without_cli  # noqa: F401  # isort: skip
from d365_components.definitions import (
    Action,
    Component,
    Connection,
    Context,
    DataSource,
    PollingTrigger,
    PollResult,
    Trigger,
    WebhookRequest,
    WebhookResponse,
    WebhookTrigger,
)
from d365_components.hookspecs import hookimpl
from d365_components.inputs import InputField, InputModel
from d365_components.version import __version__

__all__ = [
    "Action",
    "Component",
    "Connection",
    "Context",
    "DataSource",
    "InputField",
    "InputModel",
    "PollResult",
    "PollingTrigger",
    "Trigger",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookTrigger",
    "__version__",
    "hookimpl",
]
