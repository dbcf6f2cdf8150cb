"""A small third-party-style plugin used by the component-model tests."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from d365_components import Action, Component, Context, DataSource, InputField, InputModel, hookimpl


class Echo(Action):
    """Return the inputs it was given, to show what the runtime hands an action."""

    key = "acme.echo"
    label = "Echo"
    needs_connection = False

    class Inputs(InputModel):
        message: str = InputField(title="Message", description="Text to echo.", min_length=1, examples=["hi"])
        records_per_page: int = InputField(100, title="Records per page", description="Page size.", ge=1, le=5000)
        fetch_all: bool = InputField(False, title="Fetch all", description="Follow every page.")
        options: dict[str, Any] = InputField({}, title="Options", description="Free-form options.", widget="code", language="json")
        api_key: SecretStr | None = InputField(None, title="API key", description="A secret.")
        mode: str = InputField("fast", title="Mode", description="How to run.", pattern="^(fast|slow)$")

    output_schema = {
        "type": "object",
        "required": ["message"],
        "properties": {"message": {"type": "string"}, "recordsPerPage": {"type": "integer"}},
    }
    example = {"message": "hi", "recordsPerPage": 100}

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        return {"message": inputs.message, "recordsPerPage": inputs.records_per_page, "fetchAll": inputs.fetch_all}


class Colors(DataSource):
    """Colors to pick from."""

    key = "acme.colors"
    label = "Colors"
    needs_connection = False

    async def fetch(self, ctx: Context, inputs: Any) -> list[dict[str, Any]]:
        return [{"label": "Red", "value": "red"}]


@hookimpl
def register_components(register):
    register(Component(key="acme", label="Acme", description="Acme test component."))


@hookimpl
def register_actions(register):
    register(Echo)


@hookimpl
def register_data_sources(register):
    register(Colors)
