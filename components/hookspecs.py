"""The plugin contract: each hook hands the plugin a ``register`` callback.

A plugin module (or the ``d365_components`` entry point of a distribution) implements any of
these with ``@hookimpl``. The core owns the registry; a plugin only hands over classes, and the
registry checks each one as it arrives (key format, description, publishable schema, no
duplicate key). README.md's "Hooks" section documents each hook for plugin authors (a test keeps
it and these docstrings in step).
"""

from __future__ import annotations

from typing import Protocol

import pluggy

from d365_components.definitions import Component, Definition

__all__ = [
    "PROJECT",
    "Register",
    "hookimpl",
    "hookspec",
    "register_actions",
    "register_components",
    "register_connections",
    "register_data_sources",
    "register_triggers",
]

PROJECT = "d365_components"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback each hook hands a plugin: call it once per class (or :class:`Component`).

    The registry checks each item as it arrives and raises a ``DefinitionError`` for a bad one.
    """

    def __call__(self, item: type[Definition] | Component, /) -> None: ...


@hookspec
def register_components(register: Register) -> None:
    """Register the :class:`~d365_components.definitions.Component` display data of your component
    (key, label, description; icon, documentation URL, version and category optional)."""


@hookspec
def register_connections(register: Register) -> None:
    """Register Connection subclasses (how to sign in and open the Web API client),
    e.g. ``register(ClientCredentialsConnection)``."""


@hookspec
def register_actions(register: Register) -> None:
    """Register Action subclasses (Inputs, an output schema with an example, ``async perform``)."""


@hookspec
def register_triggers(register: Register) -> None:
    """Register WebhookTrigger and PollingTrigger subclasses (what starts a flow)."""


@hookspec
def register_data_sources(register: Register) -> None:
    """Register DataSource subclasses (dropdown fillers for generated forms, named by ``x-data-source``)."""
