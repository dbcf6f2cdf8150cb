"""GET RetrieveMetadataChanges(Query=@p1[,ClientVersionStamp=@p2][,DeletedMetadataFilters=@p3]): the
metadata an EntityQueryExpression selects, with version stamps (Microsoft Learn, "Query schema
definitions" and "Retrieve and detect changes to table definitions").

A stamp names the schema version it was issued at; sent back as ClientVersionStamp, the answer holds
only the tables whose definition changed since, and DeletedMetadata the tables and columns deleted
since. The emulator remembers the last STAMPS_KEPT stamps it issued; an older or unknown stamp is
Dataverse's ExpiredVersionStamp error (0x80044352, as the docs say to expect after 90 days).
Conditions support Equals, NotEquals, In and NotIn; anything else is refused, never ignored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from d365_components.emulator.metadata.shapes import attribute_json, entity_json, key_json
from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, DataverseError, bad_request
from d365_components.emulator.protocol.literals import Alias, parse_args, parse_literal
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Schema, Table
from d365_components.emulator.storage.store import utc_now

EXPIRED_VERSION_STAMP = "0x80044352"
STAMPS_KEPT = 100
_QUERY_KEYS = {"Properties", "Criteria", "AttributeQuery", "KeyQuery", "LabelQuery"}
_SUB_QUERY_KEYS = {"Properties", "Criteria"}
_OPERATORS = {"Equals", "NotEquals", "In", "NotIn"}
_DELETED_KINDS = {"Entity", "Attribute"}


def _params(ctx: Ctx, arg_text: str) -> dict[str, Any]:
    _, named = parse_args(arg_text) if arg_text else (None, {})
    params: dict[str, Any] = {}
    for key, value in named.items():
        if isinstance(value, Alias):
            raw = ctx.query.get(value)
            value = parse_literal(raw) if raw is not None else None
        params[key] = value
    unknown = set(params) - {"Query", "ClientVersionStamp", "DeletedMetadataFilters"}
    if unknown:
        raise bad_request(f"RetrieveMetadataChanges has no parameter '{sorted(unknown)[0]}'.", INVALID_ARGUMENT)
    if not isinstance(params.get("Query"), dict):
        raise bad_request("RetrieveMetadataChanges needs Query: an EntityQueryExpression (JSON).", INVALID_ARGUMENT)
    return params


def _check_keys(part: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise bad_request(f"{where} must be an object.", INVALID_ARGUMENT)
    extra = set(part) - allowed - {"@odata.type"}
    if extra:
        raise bad_request(f"{where} has the property '{sorted(extra)[0]}', which the emulator does not support.",
                          INVALID_ARGUMENT)
    return part


def _matches(item: dict[str, Any], criteria: dict[str, Any] | None, where: str) -> bool:
    """MetadataFilterExpression: Conditions and nested Filters under FilterOperator And/Or."""
    if not criteria:
        return True
    _check_keys(criteria, {"Conditions", "FilterOperator", "Filters"}, where)
    results = []
    for cond in criteria.get("Conditions") or []:
        op = cond.get("ConditionOperator")
        if op not in _OPERATORS:
            raise bad_request(f"{where}: the ConditionOperator '{op}' is not supported by the emulator.", INVALID_ARGUMENT)
        value = cond.get("Value")
        if isinstance(value, dict) and "Value" in value:
            value = value["Value"]
        actual = item.get(str(cond.get("PropertyName")))
        if isinstance(actual, str) and isinstance(value, str):
            actual, value = actual.lower(), value.lower()
        if op in ("In", "NotIn"):
            values = [v.lower() if isinstance(v, str) else v for v in (value if isinstance(value, list) else [value])]
            hit = actual in values
        else:
            hit = actual == value
        results.append(hit if op in ("Equals", "In") else not hit)
    results += [_matches(item, sub, where) for sub in criteria.get("Filters") or []]
    if criteria.get("FilterOperator", "And") == "Or":
        return any(results) if results else True
    return all(results)


def _project(item: dict[str, Any], properties: dict[str, Any] | None, always: tuple[str, ...]) -> dict[str, Any]:
    if not properties or properties.get("AllProperties"):
        return item
    names = set(properties.get("PropertyNames") or []) | set(always)
    return {k: v for k, v in item.items() if k in names}


def _fingerprint(t: Table) -> str:
    entity = entity_json(t)
    entity["Attributes"] = [attribute_json(t, c, i, True) for i, c in enumerate(t.columns.values(), 1)]
    entity["Keys"] = [key_json(t, k) for k in t.keys]
    return hashlib.sha1(json.dumps(entity, sort_keys=True, default=str).encode()).hexdigest()


def _client_version(schema: Schema, stamp: Any) -> dict[str, str] | None:
    if stamp in (None, ""):
        return None
    number = str(stamp).split("!", 1)[0]
    seen = schema.stamps
    if not number.isdigit() or int(number) not in seen:
        raise DataverseError(400, EXPIRED_VERSION_STAMP, f"The ClientVersionStamp '{stamp}' is expired or not valid; "
                             "retrieve all the metadata again without it.")
    return seen[int(number)]


def retrieve_metadata_changes(ctx: Ctx, arg_text: str) -> Reply:
    params = _params(ctx, arg_text)
    query = _check_keys(params["Query"], _QUERY_KEYS, "Query")
    attribute_query = _check_keys(query.get("AttributeQuery"), _SUB_QUERY_KEYS, "AttributeQuery")
    key_query = _check_keys(query.get("KeyQuery"), _SUB_QUERY_KEYS, "KeyQuery")
    labels = _check_keys(query.get("LabelQuery"), {"FilterLanguages", "MissingLabelBehavior"}, "LabelQuery")
    if any(lang != 1033 for lang in labels.get("FilterLanguages") or []):
        raise bad_request("The emulated org has only the language 1033.", INVALID_ARGUMENT)
    schema = ctx.schema
    since = _client_version(schema, params.get("ClientVersionStamp"))
    now = {t.metadata_id: _fingerprint(t) for t in schema.tables.values()}
    if since is not None:               # a column added and deleted again leaves the same fingerprint
        version = int(str(params["ClientVersionStamp"]).split("!", 1)[0])
        lost_columns = {r.table_id for r in schema.removed if r.version > version}
    entities = []
    for t in schema.tables.values():
        if since is not None and since.get(t.metadata_id) == now[t.metadata_id] and t.metadata_id not in lost_columns:
            continue
        item = entity_json(t)
        if not _matches(item, query.get("Criteria"), "Query.Criteria"):
            continue
        item["Attributes"] = [_project(a, attribute_query.get("Properties"), ("MetadataId", "@odata.type"))
                              for a in (attribute_json(t, c, i, True) for i, c in enumerate(t.columns.values(), 1))
                              if _matches(a, attribute_query.get("Criteria"), "AttributeQuery.Criteria")]
        item["Keys"] = [_project(k, key_query.get("Properties"), ("MetadataId",)) for k in
                        (key_json(t, k) for k in t.keys) if _matches(k, key_query.get("Criteria"), "KeyQuery.Criteria")]
        entities.append(_project(item, query.get("Properties"), ("MetadataId",)))
    issued = schema.stamps                # stamp number -> {table MetadataId: fingerprint of its definition}
    issued[schema.version] = now
    for old in sorted(issued)[:-STAMPS_KEPT]:
        del issued[old]
    return Reply.json(200, {
        "@odata.context": f"{ctx.api}/$metadata#Microsoft.Dynamics.CRM.RetrieveMetadataChangesResponse",
        "EntityMetadata": entities,
        "ServerVersionStamp": f"{schema.version}!{utc_now()}",
        "DeletedMetadata": _deleted(ctx, params, since is not None),
    })


def _deleted(ctx: Ctx, params: dict[str, Any], since_stamp: bool) -> dict[str, Any]:
    """DeletedMetadataCollection: per kind (Keys), the MetadataIds deleted since the client's stamp (Values)."""
    kinds = str(params.get("DeletedMetadataFilters") or "Entity, Attribute").replace(" ", "").split(",")
    unknown = set(kinds) - _DELETED_KINDS - {"Default", "All"}
    if unknown:
        raise bad_request(f"DeletedMetadataFilters '{sorted(unknown)[0]}' is not supported by the emulator.",
                          INVALID_ARGUMENT)
    if not since_stamp:
        return {"Count": 0, "Keys": [], "Values": []}
    version = int(str(params["ClientVersionStamp"]).split("!", 1)[0])
    wanted = _DELETED_KINDS if {"Default", "All"} & set(kinds) else set(kinds)
    groups: dict[str, list[str]] = {}
    for removed in ctx.schema.removed:
        if removed.version > version and removed.kind in wanted:
            groups.setdefault(removed.kind, []).append(removed.metadata_id)
    return {"Count": len(groups), "Keys": list(groups), "Values": list(groups.values())}
