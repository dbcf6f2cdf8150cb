"""Dataverse's webhook body (a WCF-serialized RemoteExecutionContext) as one plain JSON event.

Dataverse serializes dictionaries as ``[{"key", "value"}]`` arrays, typed values with a
``__type`` of ``"<Type>:http://schemas.microsoft.com/xrm/2011/Contracts"``, and dates as
``"\\/Date(<ms>[+-hhmm])\\/"``. A flow wants none of that: :func:`parse_event` turns the body into

    {"message", "table", "id", "attributes", "preImage", "postImage", "changed",
     "hasOldValues", "user", "userId", "organization", "correlationId", "operationId",
     "depth", "stage", "mode", "operationCreatedOn", "trimmed"}

where values are plain JSON: EntityReference -> ``{"table", "id", "name"}``, OptionSetValue ->
int, Money -> number, EntityCollection -> list, dates -> ISO 8601 in UTC. Anything that is not a
RemoteExecutionContext raises :class:`PayloadError` with a plain message (the host answers 400).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["PayloadError", "changed_columns", "key_values", "parse_date", "parse_event", "plain_value"]

_DATE = re.compile(r"^/Date\((-?\d{1,16})([+-]\d{4})?\)/$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: deeper than any real payload (ParentContext chains are a handful deep); stops hostile nesting
_MAX_DEPTH = 64


class PayloadError(ValueError):
    """The body is not a RemoteExecutionContext; the message says what is wrong, in plain words."""


def parse_date(text: str) -> str | None:
    """``/Date(1506384247000)/`` or ``/Date(1506409448000-0700)/`` -> ISO 8601 UTC; None if not a date.

    The milliseconds count from the Unix epoch in UTC either way; the offset only says where
    the server was, so it changes nothing about the instant.
    """
    match = _DATE.match(text)
    if match is None:
        return None
    try:
        moment = _EPOCH + timedelta(milliseconds=int(match.group(1)))
    except OverflowError:
        raise PayloadError(f"date {text!r} is out of range") from None
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _type_name(value: dict[str, Any]) -> str | None:
    kind = value.get("__type")
    if not isinstance(kind, str):
        return None
    return kind.split(":", 1)[0]


def _guid(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value.lower() if isinstance(value, str) else None
    raise PayloadError(f"{where} must be a GUID string")


def key_values(items: Any, where: str, depth: int = 0) -> dict[str, Any]:
    """A ``[{"key", "value"}]`` array as a dict of plain values."""
    if items is None:
        return {}
    if not isinstance(items, list):
        raise PayloadError(f"{where} must be a list of key/value pairs")
    result: dict[str, Any] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise PayloadError(f"{where}[{index}] must be an object with a text 'key'")
        result[item["key"]] = plain_value(item.get("value"), f"{where}.{item['key']}", depth + 1)
    return result


def _entity(value: dict[str, Any], where: str, depth: int) -> dict[str, Any]:
    return {
        "table": _text(value.get("LogicalName"), f"{where}.LogicalName"),
        "id": _guid(value.get("Id"), f"{where}.Id"),
        "attributes": key_values(value.get("Attributes"), f"{where}.Attributes", depth),
    }


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PayloadError(f"{where} must be text")


def plain_value(value: Any, where: str = "value", depth: int = 0) -> Any:
    """One serialized value as plain JSON (see the module docstring for the mapping)."""
    if depth > _MAX_DEPTH:
        raise PayloadError(f"{where} is nested too deeply")
    if isinstance(value, str):
        date = parse_date(value)
        return value if date is None else date
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        return [plain_value(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if not isinstance(value, dict):
        raise PayloadError(f"{where} has an unexpected value")
    kind = _type_name(value)
    if kind == "EntityReference" or (kind is None and "LogicalName" in value and "Attributes" not in value):
        return {
            "table": _text(value.get("LogicalName"), f"{where}.LogicalName"),
            "id": _guid(value.get("Id"), f"{where}.Id"),
            "name": _text(value.get("Name"), f"{where}.Name"),
        }
    if kind == "Entity" or (kind is None and "Attributes" in value):
        return _entity(value, where, depth)
    if kind == "EntityCollection":
        return plain_value(value.get("Entities") or [], f"{where}.Entities", depth + 1)
    if kind is not None and "Value" in value:  # OptionSetValue, Money, BooleanManagedProperty, AliasedValue...
        return plain_value(value["Value"], f"{where}.Value", depth + 1)
    return {k: plain_value(v, f"{where}.{k}", depth + 1) for k, v in value.items() if k != "__type"}


def _images(items: Any, where: str) -> dict[str, Any] | None:
    """Every image's columns merged into one dict (aliases do not matter to a flow); None if absent."""
    images = key_values(items, where)
    if not images:
        return None
    merged: dict[str, Any] = {}
    for alias, image in images.items():
        if not isinstance(image, dict) or not isinstance(image.get("attributes"), dict):
            raise PayloadError(f"{where}.{alias} must be an entity")
        merged.update(image["attributes"])
    return merged


def changed_columns(
    message: str, attributes: dict[str, Any], pre: dict[str, Any] | None, post: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """``{column: {"old", "new"}}``: every column a Create set; on Update, the columns whose value
    really differs from the pre-image (a column merely present in the request is no change).
    Without a pre-image, an Update lists the columns it sent with ``old`` None."""
    if message == "Create":
        return {column: {"old": None, "new": value} for column, value in attributes.items()}
    if message != "Update":
        return {}
    after = {**attributes, **{k: v for k, v in (post or {}).items() if k in attributes or (pre and k in pre)}}
    if pre is None:
        return {column: {"old": None, "new": after[column]} for column in attributes}
    return {
        column: {"old": pre.get(column), "new": new}
        for column, new in after.items()
        if pre.get(column) != new
    }


def parse_event(body: Any, *, trimmed: bool = False, organization_domain: str | None = None) -> dict[str, Any]:
    """A RemoteExecutionContext (already JSON-decoded) as one normalized event.

    Args:
        trimmed: the delivery said the payload was cut (``x-ms-dynamics-msg-size-exceeded``).
        organization_domain: the ``x-ms-dynamics-organization`` header, when sent.
    """
    if not isinstance(body, dict):
        raise PayloadError("the body must be a JSON object (a RemoteExecutionContext)")
    message = body.get("MessageName")
    if not isinstance(message, str) or not message:
        raise PayloadError("MessageName is missing: this is not a Dataverse webhook body")
    table = _text(body.get("PrimaryEntityName"), "PrimaryEntityName")
    row_id = _guid(body.get("PrimaryEntityId"), "PrimaryEntityId")

    inputs = key_values(body.get("InputParameters"), "InputParameters")
    target = inputs.get("Target")
    attributes: dict[str, Any] = {}
    if isinstance(target, dict) and isinstance(target.get("attributes"), dict):
        attributes = target["attributes"]
        row_id = row_id or target.get("id")
    elif isinstance(target, dict):  # Delete: the target is an EntityReference
        row_id = row_id or target.get("id")
    if row_id is None:  # a Create's new id may only be in its outputs
        created = key_values(body.get("OutputParameters"), "OutputParameters").get("id")
        row_id = created.lower() if isinstance(created, str) else None

    pre = _images(body.get("PreEntityImages"), "PreEntityImages")
    post = _images(body.get("PostEntityImages"), "PostEntityImages")
    if "InputParameters" not in body and message in ("Create", "Update", "Delete"):
        trimmed = True  # Dataverse dropped the parameters and images to fit 256 KB

    created_on = body.get("OperationCreatedOn")
    return {
        "message": message,
        "table": table,
        "id": row_id,
        "attributes": attributes,
        "preImage": pre,
        "postImage": post,
        "changed": changed_columns(message, attributes, pre, post),
        "hasOldValues": pre is not None,
        "user": _guid(body.get("InitiatingUserId"), "InitiatingUserId"),
        "userId": _guid(body.get("UserId"), "UserId"),
        "organization": {
            "id": _guid(body.get("OrganizationId"), "OrganizationId"),
            "name": _text(body.get("OrganizationName"), "OrganizationName"),
            "domain": organization_domain,
        },
        "correlationId": _guid(body.get("CorrelationId"), "CorrelationId"),
        "operationId": _guid(body.get("OperationId"), "OperationId"),
        "depth": _whole(body.get("Depth")),
        "stage": _whole(body.get("Stage")),
        "mode": _whole(body.get("Mode")),
        "operationCreatedOn": plain_value(created_on, "OperationCreatedOn") if isinstance(created_on, str) else None,
        "trimmed": trimmed,
    }
