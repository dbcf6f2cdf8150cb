"""Registering a webhook in Dataverse: a serviceendpoint plus one processing step per message.

Work in progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from d365_components.errors import D365Error


class RegistrationError(D365Error):
    """The webhook could not be registered as asked."""

    disposition = "config"


@dataclass(frozen=True)
class Registration:
    """What Dataverse should hold for one deployed webhook trigger."""

    name: str
    url: str
    key: str | None
    table: str
    messages: tuple[str, ...]
    filtering_columns: tuple[str, ...] = ()
    pre_image: bool = False
    post_image: bool = False
    synchronous: bool = False


async def deploy(client: Any, wanted: Registration) -> dict[str, Any]:
    raise NotImplementedError


async def remove(client: Any, state: dict[str, Any]) -> None:
    raise NotImplementedError


async def verify(client: Any, wanted: Registration) -> dict[str, Any]:
    raise NotImplementedError
