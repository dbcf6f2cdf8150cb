"""Inputs, outputs and helpers shared by many actions, so every form names and explains them alike.

Record actions take ``entityType`` (a table's entity set name such as ``accounts``, or its
logical name ``account``) and ``entityId`` (a row's GUID). Metadata actions take ``table``
(a table's logical name or MetadataId) — a different thing, with a different name and
dropdown, so a designer can never pick a table id where a row id belongs.

Conventions a form generator can rely on:

- **Groups**: every action's ``group`` is one of :data:`GROUPS`; inside a form, advanced options
  sit in the sections :data:`ADVANCED`, ``Paging``, ``Performance``, ``Resume`` or ``Retries`` and
  carry ``x-advanced`` when they can stay collapsed.
- **Dropdowns**: ``x-data-source`` names a data source of the registry. ``x-data-source-inputs``
  maps each input of that data source to where its value comes from:

  - a name (``"entityType"``) is another input of the same form: first a sibling inside the same
    object (``{"table": "table"}`` in a ``{table, id}`` pair), else a top-level input;
  - a value starting with ``=`` is a literal (``{"table": "=leads"}``): the picker of a Lead ID
    always lists leads. The ``table`` input of every data source also accepts the ``=`` form as
    given, so a host that passes the mapping through unresolved still gets the right rows.

  :func:`data_source_inputs` resolves a mapping exactly this way.
- **Errors in outputs**: every error object an output carries (a failed batch operation, a row
  of a bulk load) is ``{status, code, message, hint}``: :data:`ERROR_SCHEMA`, :func:`error_json`.
- **Rows in outputs**: an action that returns one row returns ``{id, entityType, entityUrl,
  etag, record}`` (:func:`record_output_schema`).
"""

from __future__ import annotations

from typing import Any

from d365_components.conventions import COLUMNS, GUID_PATTERN, NAME_PATTERN, RECORDS, RELATIONSHIPS, TABLES
from d365_components.errors import FieldError, InputValidationError
from d365_components.inputs import InputField
from d365_components.redaction import redact

__all__ = [
    "ADVANCED",
    "COLUMNS",  # re-exported from d365_components.conventions, like the two patterns
    "ERROR_SCHEMA",
    "EXAMPLE_ID",
    "EXAMPLE_ORG",
    "FORMATTED",
    "GROUPS",
    "GUID_PATTERN",
    "LOOKUP_FORMS",
    "NAMESPACE",
    "NAME_PATTERN",
    "alternate_key_field",
    "conflict",
    "data_source_inputs",
    "entity_id_field",
    "entity_type_field",
    "error_json",
    "expand_field",
    "field_names_field",
    "formatted_values_field",
    "impersonate_field",
    "impersonation_headers",
    "literal",
    "plain_id",
    "record_id_field",
    "record_output_schema",
]

EXAMPLE_ID = "7eb682f1-ca75-e511-80d4-00155d2a68d1"
EXAMPLE_ORG = "https://contoso.crm.dynamics.com/api/data/v9.2"

#: the action groups a designer's palette shows, in this order
GROUPS = ("Records", "Queries", "Batch", "Files", "Activities", "Sales", "Service", "Metadata", "Other")
#: the form section of options most flows leave alone
ADVANCED = "Advanced"

#: the namespace of Dataverse's types (entity types, metadata classes) in @odata.type
NAMESPACE = "Microsoft.Dynamics.CRM."
#: the annotation that carries display text (formatted values)
FORMATTED = "OData.Community.Display.V1.FormattedValue"


def literal(value: str) -> str:
    """An ``x-data-source-inputs`` value that is the fixed ``value``, not another input's name."""
    return f"={value}"


def data_source_inputs(
    mapping: dict[str, str], inputs: dict[str, Any], siblings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The inputs to call a field's data source with: literals as written, names looked up among
    ``siblings`` (the object holding the field) and then the form's top-level ``inputs``. Names with
    no value yet are left out, as a form would before the user fills them."""
    resolved: dict[str, Any] = {}
    for name, source in mapping.items():
        if source.startswith("="):
            resolved[name] = source[1:]
        elif siblings is not None and siblings.get(source) not in (None, ""):
            resolved[name] = siblings[source]
        elif inputs.get(source) not in (None, ""):
            resolved[name] = inputs[source]
    return resolved


def plain_id(value: str) -> str:
    """A GUID as Dataverse writes it back: no braces, lower case."""
    return value.strip().strip("{}").lower()


# -- inputs -----------------------------------------------------------------------------------


#: how every lookup value may be given, in record actions, batch items and bulk rows alike
LOOKUP_FORMS = (
    'A lookup takes {"table": "accounts", "id": "<guid>"}, {"table": "account", "key": {"accountnumber": "A-1"}}, '
    'a GUID (when the lookup has one target table) or "parentcustomerid_account@odata.bind": "/accounts(<guid>)"; '
    "the table by entity set or logical name."
)
#: a table name; empty text passes the pattern so an optional table input may be left empty in a
#: form (a required one has minLength 1), and every entityType publishes the same pattern
_TABLE_NAME_PATTERN = f"^(?:{NAME_PATTERN[1:-1]})?$"


def entity_type_field(**overrides: Any) -> Any:
    """``entityType``: the table of the rows, picked from the tables dropdown (entity set names),
    given by entity set or logical name (resolved through metadata, cached).

    Optional when given a ``default`` (then an empty value from a form means "not given")."""
    default = overrides.pop("default", ...)
    if default is ...:
        overrides.setdefault("min_length", 1)
    overrides.setdefault("pattern", _TABLE_NAME_PATTERN)
    return InputField(
        default,
        title=overrides.pop("title", "Table"),
        description=overrides.pop(
            "description",
            "The table of the rows: its entity set name (accounts) or logical name (account).",
        ),
        examples=overrides.pop("examples", ["accounts", "contacts"]),
        data_source=TABLES,
        **overrides,
    )


def entity_id_field(default: Any = ..., **overrides: Any) -> Any:
    """``entityId``: a row's GUID, picked from the rows of the table named by ``table_input``."""
    table_input = overrides.pop("table_input", "entityType")
    return InputField(
        default,
        title=overrides.pop("title", "Row ID"),
        description=overrides.pop("description", "The GUID of the row (its primary key)."),
        examples=overrides.pop("examples", [EXAMPLE_ID]),
        data_source=RECORDS,
        data_source_inputs={"table": table_input},
        pattern=GUID_PATTERN,
        **overrides,
    )


def record_id_field(title: str, table: str, description: str, default: Any = ..., **overrides: Any) -> Any:
    """The GUID of a row of one fixed table (Lead ID, Case ID...), with a picker of that table's rows."""
    return entity_id_field(default, title=title, description=description, table_input=literal(table), **overrides)


def alternate_key_field(
    title: str = "Alternate key",
    description: str = (
        "Find the row by an alternate key instead of its ID: the key's columns and values as JSON, "
        'e.g. {"accountnumber": "A-1"}. Give Row ID or Alternate key, not both.'
    ),
    example: dict[str, Any] | None = None,
) -> Any:
    return InputField(
        None,
        title=title,
        description=description,
        examples=[example or {"accountnumber": "A-1"}],
        widget="code",
        language="json",
        min_length=1,
        schema={"propertyNames": {"pattern": NAME_PATTERN}},
    )


def field_names_field(
    description: str, *, table_input: str = "entityType", title: str = "Columns", schema: dict[str, Any] | None = None
) -> Any:
    """``fieldNames``: columns to read ($select), picked from the table's readable columns."""
    return InputField(
        [],
        title=title,
        description=description,
        examples=[["name", "revenue"]],
        widget="list",
        data_source=COLUMNS,
        data_source_inputs={"table": table_input, "purpose": literal("read")},
        schema=schema,
    )


def expand_field(description: str = (
    "Navigation properties to include ($expand), optionally with options: primarycontactid($select=fullname)."
)) -> Any:
    return InputField(
        [],
        title="Expand",
        description=description,
        examples=[["primarycontactid($select=fullname)"]],
        widget="list",
        data_source=RELATIONSHIPS,
        data_source_inputs={"table": "entityType"},
    )


def formatted_values_field() -> Any:
    return InputField(
        False,
        title="Include formatted values",
        description=(
            "Also return display text for choices, lookups, money and dates, as "
            "column@OData.Community.Display.V1.FormattedValue next to each value."
        ),
        group=ADVANCED,
        advanced=True,
    )


def impersonate_field() -> Any:
    return InputField(
        None,
        title="Impersonate user",
        description=(
            "The GUID of the user to run as: their Microsoft Entra object ID (sent as CallerObjectId) or "
            "systemuserid. The connection's user needs the Delegate role."
        ),
        examples=["2138bd90-ec19-ea11-a811-000d3a334e11"],
        pattern=GUID_PATTERN,
        group=ADVANCED,
        advanced=True,
    )


def impersonation_headers(user_id: str | None, *, by_object_id: bool = True) -> dict[str, str]:
    """CallerObjectId (preferred) or MSCRMCallerID for ``user_id``; nothing when not set."""
    if not user_id:
        return {}
    return {"CallerObjectId" if by_object_id else "MSCRMCallerID": plain_id(user_id)}


# -- cross-field rules ------------------------------------------------------------------------


def conflict(message: str, *inputs: str) -> InputValidationError:
    """A broken rule between inputs, reported on each input it names (``entityId``, ``alternateKey``).

    Raised from a model validator it passes through pydantic untouched, so the form marks every
    field involved instead of the form as a whole.
    """
    return InputValidationError([FieldError(f"/{name}", message) for name in inputs])


# -- outputs ----------------------------------------------------------------------------------

ERROR_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "Why it did not apply: HTTP status, Dataverse error code, message, and a hint on how to fix it.",
    "properties": {
        "status": {"type": "integer", "description": "HTTP status (424: not applied because another operation failed)."},
        "code": {"type": ["string", "null"], "description": "Dataverse error code, e.g. 0x80040217."},
        "message": {"type": "string", "description": "What went wrong."},
        "hint": {"type": ["string", "null"], "description": "How to fix it, when known."},
    },
    "required": ["status", "code", "message", "hint"],
}


def error_json(error: Any) -> dict[str, Any] | None:
    """An error as the ``{status, code, message, hint}`` object outputs carry (messages redacted)."""
    if error is None:
        return None
    hint = getattr(error, "hint", None)
    return {
        "status": getattr(error, "status", 0) or 0,
        "code": getattr(error, "code", None),
        "message": redact(str(getattr(error, "message", error))),
        "hint": redact(hint) if hint else None,
    }


def record_output_schema(extra: dict[str, Any] | None = None, required: list[str] | None = None) -> dict[str, Any]:
    """The output of an action that returns one row: ``{id, entityType, entityUrl, etag, record}``."""
    properties: dict[str, Any] = {
        "id": {"type": ["string", "null"], "description": "The row's GUID (null when addressed by alternate key and not returned)."},
        "entityType": {"type": "string", "description": "The table's entity set name."},
        "entityUrl": {"type": ["string", "null"], "description": "The row's Web API URL."},
        "etag": {"type": ["string", "null"], "description": "The row's ETag (version), for Only if ETag matches."},
        "record": {"type": ["object", "null"], "description": "The row's columns (null unless returned)."},
    }
    properties.update(extra or {})
    return {
        "type": "object",
        "required": ["id", "entityType", "entityUrl", "etag", "record", *(required or [])],
        "properties": properties,
    }
