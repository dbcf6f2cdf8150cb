"""Inputs and helpers shared by many actions, so every form names and explains them alike.

Record actions take ``entityType`` (a table's entity set name such as ``accounts``, or its
logical name ``account``) and ``entityId`` (a row's GUID). Metadata actions take ``table``
(a table's logical name or MetadataId) — a different thing, with a different name and
dropdown, so a designer can never pick a table id where a row id belongs.
"""

from __future__ import annotations

from typing import Any

from d365_components.inputs import InputField

GUID_PATTERN = r"^\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?$"

#: data source keys (defined in actions/data_sources.py) used as dropdown hints
TABLES = "dynamics365.tables"                  # value: entity set name
TABLE_DEFINITIONS = "dynamics365.table_definitions"  # value: logical name
COLUMNS = "dynamics365.columns"
CHOICE_OPTIONS = "dynamics365.choice_options"
RELATIONSHIPS = "dynamics365.relationships"
RECORDS = "dynamics365.records"


def entity_type_field(**overrides: Any) -> Any:
    return InputField(
        title=overrides.pop("title", "Table"),
        description=overrides.pop(
            "description",
            "The table of the rows: its entity set name (accounts) or logical name (account).",
        ),
        examples=["accounts", "contacts"],
        data_source=TABLES,
        min_length=1,
        **overrides,
    )


def entity_id_field(default: Any = ..., **overrides: Any) -> Any:
    return InputField(
        default,
        title=overrides.pop("title", "Row ID"),
        description=overrides.pop("description", "The GUID of the row (its primary key)."),
        examples=["7eb682f1-ca75-e511-80d4-00155d2a68d1"],
        data_source=RECORDS,
        data_source_inputs={"table": "entityType"},
        pattern=GUID_PATTERN,
        **overrides,
    )


def impersonate_field() -> Any:
    return InputField(
        None,
        title="Impersonate user",
        description=(
            "Run as this user: their Entra object id (CallerObjectId) or systemuserid. "
            "The connection's user needs the Delegate role."
        ),
        pattern=GUID_PATTERN,
        group="Advanced",
        advanced=True,
    )


def impersonation_headers(user_id: str | None, *, by_object_id: bool = True) -> dict[str, str]:
    """CallerObjectId (preferred) or MSCRMCallerID for ``user_id``; nothing when not set."""
    if not user_id:
        return {}
    return {"CallerObjectId" if by_object_id else "MSCRMCallerID": user_id.strip("{}").lower()}
