"""Deleting schema through the Web API: a custom table (its rows, relationships and keys go with it),
a custom column (with If-Match: *, as Microsoft's SDK sends it) and a custom relationship.

Dataverse answers 204 to each. System tables, columns and relationships cannot be deleted; the
error code used for that refusal (InvalidOperation, 0x8004023b) is UNCONFIRMED against the service,
the refusal itself is documented ("you can only delete custom tables/columns").
"""

from __future__ import annotations

from d365_components.emulator.protocol.errors import DataverseError
from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Column, ManyToMany, OneToMany, Removed, Table
from d365_components.emulator.storage.store import Store, q

INVALID_OPERATION = "0x8004023b"


def _refuse(message: str) -> DataverseError:
    return DataverseError(400, INVALID_OPERATION, message)


def _changed(ctx: Ctx) -> None:
    """Every cached plan and statement may name what was dropped."""
    ctx.schema.link()
    ctx.store.plans.clear()
    ctx.store._sql.clear()


def _drop_sql_column(store: Store, table: str, name: str) -> None:
    """SQLite refuses to drop a column an index uses: drop those indexes first."""
    for ix in store.execute(f"PRAGMA index_list({q(table)})"):
        if any(c["name"] == name for c in store.execute(f"PRAGMA index_info({q(ix['name'])})")):
            store.conn.execute(f"DROP INDEX IF EXISTS {q(ix['name'])}")
    store.conn.execute(f"ALTER TABLE {q(table)} DROP COLUMN {q(name)}")


def _drop_files(store: Store, where: str, params: list[str]) -> None:
    """The stored files of a dropped table or file column (records/files.py keeps them in _d365_files)."""
    if store.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_d365_files'"):
        store.conn.execute(f"DELETE FROM _d365_file_blocks WHERE owner IN (SELECT fileid FROM _d365_files WHERE {where})",
                           params)
        store.conn.execute(f"DELETE FROM _d365_files WHERE {where}", params)


def _forget_column(ctx: Ctx, t: Table, c: Column) -> None:
    store = ctx.store
    t.keys = [k for k in t.keys if c.name not in k.columns]
    for name in (c.name, c.type_column):
        if name and name in {r["name"] for r in store.execute(f"PRAGMA table_info({q(t.logical_name)})")}:
            _drop_sql_column(store, t.logical_name, name)
    t.columns.pop(c.name, None)
    companion = t.columns.get(c.name + "_name")
    if c.type in ("File", "Image"):
        _drop_files(store, "tablename = ? AND columnname = ?", [t.logical_name, c.name])
    if c.type in ("File", "Image") and companion is not None:
        _drop_sql_column(store, t.logical_name, companion.name)
        t.columns.pop(companion.name)
    ctx.schema.removed.append(Removed(ctx.schema.version + 1, "Attribute", c.metadata_id, t.metadata_id))


def delete_attribute(ctx: Ctx, t: Table, c: Column) -> Reply:
    if not c.is_custom or c.is_primary_name or c.is_primary_id:
        raise _refuse(f"The attribute '{c.name}' of entity '{t.logical_name}' is a system or primary attribute "
                      f"and cannot be deleted.")
    if c.is_lookup:
        raise _refuse(f"The lookup attribute '{c.name}' is deleted with its relationship "
                      f"(DELETE RelationshipDefinitions).")
    with ctx.store.lock:
        _forget_column(ctx, t, c)
        _changed(ctx)
    return Reply.empty(204)


def delete_relationship(ctx: Ctx, rel: OneToMany | ManyToMany) -> Reply:
    if not rel.is_custom:
        raise _refuse(f"The relationship '{rel.schema_name}' is a system relationship and cannot be deleted.")
    with ctx.store.lock:
        _drop_relationship(ctx, rel)
        _changed(ctx)
    return Reply.empty(204)


def _drop_relationship(ctx: Ctx, rel: OneToMany | ManyToMany, dropped_table: str = "") -> None:
    """A 1:N takes its lookup column with it (unless its whole table goes); an N:N its intersect table."""
    schema = ctx.schema
    schema.relationships.pop(rel.schema_name, None)
    if isinstance(rel, OneToMany) and rel.referencing != dropped_table:
        referencing = schema.tables.get(rel.referencing)
        column = referencing.columns.get(rel.referencing_attribute) if referencing else None
        still_used = any(isinstance(r, OneToMany) and r.referencing == rel.referencing
                         and r.referencing_attribute == rel.referencing_attribute for r in schema.relationships.values())
        if referencing is not None and column is not None and not still_used:
            _forget_column(ctx, referencing, column)
    elif isinstance(rel, ManyToMany):
        ctx.store.conn.execute(f"DROP TABLE IF EXISTS {q(rel.intersect)}")


def delete_entity(ctx: Ctx, t: Table) -> Reply:
    if not t.is_custom:
        raise _refuse(f"The entity '{t.logical_name}' is a system entity and cannot be deleted.")
    schema = ctx.schema
    with ctx.store.lock:
        for rel in list(schema.relationships.values()):
            touches = (rel.referenced, rel.referencing) if isinstance(rel, OneToMany) else (rel.entity1, rel.entity2)
            if t.logical_name in touches:
                _drop_relationship(ctx, rel, dropped_table=t.logical_name)
        _drop_files(ctx.store, "tablename = ?", [t.logical_name])
        ctx.store.conn.execute(f"DROP TABLE IF EXISTS {q(t.logical_name)}")
        schema.tables.pop(t.logical_name, None)
        schema.by_set.pop(t.entity_set, None)
        schema.removed.append(Removed(schema.version + 1, "Entity", t.metadata_id))
        _changed(ctx)
    return Reply.empty(204)
