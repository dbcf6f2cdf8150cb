"""Table metadata the record actions need, read once per connection, and lookup binding.

Designers name tables as they know them (``accounts``, ``account``, ``Contacts``) and set lookup
columns by what they have: a ``{table, id}`` pair, an alternate-key reference ``{table, key}``, or
a bare GUID. Dataverse wants the entity set in the URL and ``navprop@odata.bind`` in the body, with
the navigation property of the right target for multi-table lookups (``parentcustomerid`` ->
``parentcustomerid_account``). Both come from metadata, cached per client (weakly, so a closed
connection frees its cache) and refreshed after :data:`MAX_AGE` seconds.

Metadata calls are optional: an app user without metadata rights (403) still works with entity set
names and explicit ``navprop@odata.bind`` values, as Dataverse itself would accept them.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from d365_components.connections.client import WebApiClient
from d365_components.connections.odata import entity_path, is_guid
from d365_components.conventions import NAME
from d365_components.errors import DataverseError, FieldError, InputValidationError

__all__ = ["MAX_AGE", "Metadata", "Relationship", "TableInfo", "bind_rows", "bind_values", "metadata_for"]

T = TypeVar("T")

MAX_AGE = 600.0
_BIND_TEXT = re.compile(r"^/?([A-Za-z_][A-Za-z0-9_]*)\((.+)\)$")


@dataclass(frozen=True)
class TableInfo:
    """What the actions need to know about one table. ``logical_name`` is None when metadata
    could not be read (the entity set name was taken as given)."""

    entity_set: str
    logical_name: str | None = None
    primary_id: str | None = None
    primary_name: str | None = None


@dataclass(frozen=True)
class Relationship:
    """One navigation property of a table, seen from that table."""

    schema_name: str
    nav_property: str
    related_table: str  # logical name of the row on the other side
    single_valued: bool  # many-to-one: PUT/DELETE .../nav/$ref without a target id
    kind: str  # ManyToOne, OneToMany, ManyToMany


@dataclass
class _Cached:
    value: Any
    at: float = field(default_factory=time.monotonic)

    def fresh(self) -> bool:
        return time.monotonic() - self.at < MAX_AGE


class Metadata:
    """Tables, lookups and relationships of one org, read lazily through one client."""

    def __init__(self, client: WebApiClient) -> None:
        self._client = weakref.ref(client)
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self) -> None:
        """Drop everything cached (after a schema change)."""
        self._cache.clear()

    async def _cached(self, name: str, load: Callable[[], Awaitable[T]]) -> T:
        hit = self._cache.get(name)
        if hit is not None and hit.fresh():
            return cast(T, hit.value)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            hit = self._cache.get(name)
            if hit is not None and hit.fresh():
                return cast(T, hit.value)
            value = await load()
            self._cache[name] = _Cached(value)
            return value

    @property
    def client(self) -> WebApiClient:
        client = self._client()
        if client is None:
            raise RuntimeError("the connection's client was closed")
        return client

    async def tables(self) -> list[TableInfo] | None:
        """Every table, or None when the caller may not read metadata."""

        async def load() -> list[TableInfo] | None:
            try:
                body = await self.client.get_json(
                    "EntityDefinitions",
                    params={"$select": "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute"},
                )
            except DataverseError as exc:
                if exc.status in (401, 403, 404):
                    return None
                raise
            return [
                TableInfo(
                    entity_set=item["EntitySetName"],
                    logical_name=item.get("LogicalName"),
                    primary_id=item.get("PrimaryIdAttribute"),
                    primary_name=item.get("PrimaryNameAttribute"),
                )
                for item in body.get("value", [])
                if item.get("EntitySetName")
            ]

        return await self._cached("tables", load)

    async def table(self, name: str, *, pointer: str = "/entityType") -> TableInfo:
        """The table named by entity set or logical name (case-insensitive when unambiguous).

        Raises:
            InputValidationError: metadata is readable and no table has that name.
        """
        tables = await self.tables()
        if tables is None:
            if not NAME.match(name):
                raise InputValidationError([FieldError(pointer, f"'{name}' is not a table name")])
            return TableInfo(entity_set=name)
        matchers: tuple[Callable[[TableInfo], bool], ...] = (
            lambda t: t.entity_set == name, lambda t: t.logical_name == name)
        for exact in matchers:
            found = [t for t in tables if exact(t)]
            if found:
                return found[0]
        lowered = name.lower()
        found = [t for t in tables if lowered in (t.entity_set.lower(), (t.logical_name or "").lower())]
        if len({t.entity_set for t in found}) == 1:
            return found[0]
        raise InputValidationError(
            [FieldError(pointer, f"no table is named '{name}' (give its entity set name such as 'accounts' or its logical name such as 'account')")]
        )

    async def lookups(self, logical_name: str) -> dict[str, dict[str, str]] | None:
        """``{lookup column: {target logical name: navigation property}}`` of a table."""

        async def load() -> dict[str, dict[str, str]] | None:
            try:
                body = await self.client.get_json(
                    f"EntityDefinitions(LogicalName='{logical_name}')",
                    params={
                        "$select": "LogicalName",
                        "$expand": "ManyToOneRelationships($select=SchemaName,ReferencingAttribute,"
                        "ReferencedEntity,ReferencingEntityNavigationPropertyName)",
                    },
                )
            except DataverseError as exc:
                if exc.status in (401, 403, 404):
                    return None
                raise
            found: dict[str, dict[str, str]] = {}
            for rel in body.get("ManyToOneRelationships", []):
                column, target = rel.get("ReferencingAttribute"), rel.get("ReferencedEntity")
                nav = rel.get("ReferencingEntityNavigationPropertyName")
                if column and target and nav:
                    found.setdefault(column, {})[target] = nav
            return found

        return await self._cached(f"lookups:{logical_name}", load)

    async def relationships(self, logical_name: str) -> list[Relationship] | None:
        """Every navigation property of a table (N:1, 1:N and N:N), or None without metadata rights."""

        async def load() -> list[Relationship] | None:
            try:
                body = await self.client.get_json(
                    f"EntityDefinitions(LogicalName='{logical_name}')",
                    params={
                        "$select": "LogicalName",
                        "$expand": "ManyToOneRelationships,OneToManyRelationships,ManyToManyRelationships",
                    },
                )
            except DataverseError as exc:
                if exc.status in (401, 403, 404):
                    return None
                raise
            found: list[Relationship] = []
            for rel in body.get("ManyToOneRelationships", []):
                found.append(Relationship(
                    rel["SchemaName"], rel["ReferencingEntityNavigationPropertyName"],
                    rel["ReferencedEntity"], True, "ManyToOne",
                ))
            for rel in body.get("OneToManyRelationships", []):
                found.append(Relationship(
                    rel["SchemaName"], rel["ReferencedEntityNavigationPropertyName"],
                    rel["ReferencingEntity"], False, "OneToMany",
                ))
            for rel in body.get("ManyToManyRelationships", []):
                first = rel.get("Entity1LogicalName") == logical_name
                nav = rel.get("Entity1NavigationPropertyName" if first else "Entity2NavigationPropertyName")
                other = rel.get("Entity2LogicalName" if first else "Entity1LogicalName")
                if nav and other:
                    found.append(Relationship(rel["SchemaName"], nav, other, False, "ManyToMany"))
            return found

        return await self._cached(f"relationships:{logical_name}", load)


_by_client: weakref.WeakKeyDictionary[Any, Metadata] = weakref.WeakKeyDictionary()


def metadata_for(client: WebApiClient) -> Metadata:
    """The metadata cache of ``client`` (one per connection, freed with it)."""
    found = _by_client.get(client)
    if found is None:
        found = _by_client[client] = Metadata(client)
    return found


def _is_lookup_reference(value: Any) -> bool:
    return isinstance(value, dict) and "table" in value and ("id" in value or "key" in value)


async def bind_values(
    metadata: Metadata, table: TableInfo, values: dict[str, Any], pointers: dict[str, str]
) -> dict[str, Any]:
    """``values`` with every lookup written as ``navprop@odata.bind``.

    A lookup column takes ``{"table": "accounts", "id": "<guid>"}``, ``{"table": "account",
    "key": {"accountnumber": "A-1"}}``, a bare GUID (when the lookup has one target), text such as
    ``/accounts(<guid>)``, or null (clears it). The column may also be named by its read name
    (``_parentcustomerid_value``) or one target's navigation property (``parentcustomerid_account``).
    ``pointers`` maps each column to the input it came from, so an error names the field. Values
    none of which can be a lookup are returned as they are, without reading metadata.
    """
    if not any(_may_be_lookup(column, value) for column, value in values.items()):
        return dict(values)
    lookups = await metadata.lookups(table.logical_name) if table.logical_name else None
    result: dict[str, Any] = {}
    problems: list[FieldError] = []
    for column, value in values.items():
        targets = _targets_of(lookups or {}, column)
        if not targets:
            if _is_lookup_reference(value):
                where = "metadata is not readable" if lookups is None else f"'{column}' is not a lookup column of {table.logical_name or table.entity_set}"
                problems.append(FieldError(pointers[column], f"a {{table, id}} value needs a lookup column ({where}); write '<navigation property>@odata.bind' instead"))
            else:
                result[column] = value
            continue
        try:
            nav, bound = await _bind_one(metadata, column, targets, value)
        except ValueError as exc:
            problems.append(FieldError(pointers[column], str(exc)))
            continue
        result[f"{nav}@odata.bind"] = bound
    if problems:
        raise InputValidationError(problems)
    return result


async def bind_rows(
    metadata: Metadata, table: TableInfo, rows: list[dict[str, Any]], pointer: str, *, keep: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Every row with its lookups written as ``navprop@odata.bind`` (see :func:`bind_values`);
    ``keep`` names columns left as given (alternate-key columns). Rows without a value that can be
    a lookup (a reference object, a GUID, ``/accounts(...)`` text) are returned as they are, without
    reading the table's lookups, so a plain load costs no request and one pass (null counts: it
    clears a lookup). Errors name
    ``<pointer>/<row>/<column>``."""
    if not any(_may_be_lookup(column, value) for row in rows for column, value in row.items() if column not in keep):
        return rows
    lookups = await metadata.lookups(table.logical_name) if table.logical_name else None
    names = set(lookups or {})
    names |= {f"_{column}_value" for column in names}
    names |= {nav for targets in (lookups or {}).values() for nav in targets.values()}
    bound: list[dict[str, Any]] = []
    problems: list[FieldError] = []
    for index, row in enumerate(rows):
        if not any(column in names or _is_lookup_reference(value) for column, value in row.items()
                   if column not in keep):
            bound.append(row)
            continue
        values = {column: value for column, value in row.items() if column not in keep}
        try:
            written = await bind_values(metadata, table, values, {c: f"{pointer}/{index}/{c}" for c in values})
        except InputValidationError as exc:
            problems.extend(exc.errors)
            if len(problems) >= 20:
                break
            continue
        bound.append({**{c: row[c] for c in keep if c in row}, **written})
    if problems:
        raise InputValidationError(problems)
    return bound


def _may_be_lookup(column: str, value: Any) -> bool:
    """Whether ``value`` could be meant for a lookup column (null clears one)."""
    if value is None or _is_lookup_reference(value) or (column.startswith("_") and column.endswith("_value")):
        return True
    return isinstance(value, str) and (is_guid(value) or bool(_BIND_TEXT.match(value.strip())))


def _targets_of(lookups: dict[str, dict[str, str]], column: str) -> dict[str, str] | None:
    """The lookup's targets by column name, by its read name (``_parentcustomerid_value``), or by
    one target's navigation property (``parentcustomerid_account``: that target only)."""
    if column in lookups:
        return lookups[column]
    if column.startswith("_") and column.endswith("_value") and column[1:-6] in lookups:
        return lookups[column[1:-6]]
    by_nav = {target: nav for targets in lookups.values() for target, nav in targets.items() if nav == column}
    return by_nav or None


async def _bind_one(metadata: Metadata, column: str, targets: dict[str, str], value: Any) -> tuple[str, str | None]:
    """(navigation property, bind path) for one lookup value."""
    names = " or ".join(sorted(targets))
    if value is None:
        return next(iter(targets.values())), None
    if _is_lookup_reference(value):
        target = await _target(metadata, column, targets, str(value["table"]))
        extra = set(value) - {"table", "id", "key"}
        if extra or ("id" in value) == ("key" in value):
            raise ValueError(f"a lookup reference is {{table, id}} or {{table, key}}; got {sorted(value)}")
        if "id" in value:
            if not is_guid(value["id"]):
                raise ValueError(f"id '{value['id']}' is not a GUID")
            key: Any = value["id"]
        else:
            if not isinstance(value["key"], dict) or not value["key"]:
                raise ValueError("key must be an object of alternate-key columns, e.g. {\"accountnumber\": \"A-1\"}")
            key = value["key"]
        return targets[target.logical_name or ""], "/" + entity_path(target.entity_set, key)
    if isinstance(value, str) and is_guid(value):
        if len(targets) != 1:
            raise ValueError(f"'{column}' can point to {names}: give {{\"table\": ..., \"id\": \"{value}\"}}")
        [(logical, nav)] = targets.items()
        target = await metadata.table(logical)
        return nav, "/" + entity_path(target.entity_set, value)
    if isinstance(value, str) and (match := _BIND_TEXT.match(value.strip())):
        target = await _target(metadata, column, targets, match.group(1))
        return targets[target.logical_name or ""], "/" + f"{target.entity_set}({match.group(2)})"
    raise ValueError(
        f"'{column}' is a lookup to {names}: give a GUID, {{\"table\": ..., \"id\": ...}} or {{\"table\": ..., \"key\": {{...}}}}"
    )


async def _target(metadata: Metadata, column: str, targets: dict[str, str], name: str) -> TableInfo:
    try:
        target = await metadata.table(name)
    except InputValidationError:
        raise ValueError(f"no table is named '{name}'") from None
    if target.logical_name not in targets:
        raise ValueError(f"'{column}' cannot point to {name}; it points to {' or '.join(sorted(targets))}")
    return target
