"""`TableBuilder` adds tables to a schema with the system columns Dataverse gives every table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from d365_components.emulator.storage.columns import (
    ColumnSpec,
    LookupSpec,
    StateOptionSets,
    datetime_column,
    decimal_column,
)
from d365_components.emulator.storage.schema import AlternateKey, Column, OneToMany, Schema, Table
from d365_components.emulator.storage.store import Store


class TableBuilder:
    """Adds tables to a schema with the system columns Dataverse gives every table (id, state,
    stamps, owner, version, currency for money) and the relationships of their lookups.

        builder = TableBuilder(store.schema)
        builder.table("new_thing", "new_things", "new_thingid", "new_name", 10001, "Thing", "Things", [string_column("new_name")])
        builder.finish(store)          # relationships, navigation properties, SQLite tables
    """

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema if schema is not None else Schema()
        self.pending: list[OneToMany] = []

    def finish(self, store: Store | None = None) -> list[Table]:
        """Register the pending relationships, re-link the schema, create the new tables in `store`."""
        added = {rel.referencing for rel in self.pending}
        for rel in self.pending:
            if rel.schema_name not in self.schema.relationships:
                self.schema.add_relationship(rel)
        self.pending = []
        self.schema.link()
        tables = [self.schema.tables[name] for name in added]
        if store is not None:
            for t in tables:
                store.create_table(t)
        return tables

    def table(self, name: str, entity_set: str, pk: str, primary_name: str, otc: int, display: str, plural: str,
              cols: Iterable[ColumnSpec], *, ownership: str = "UserOwned", state: StateOptionSets | None = None,
              keys: Iterable[tuple[str, Sequence[str]]] = (), activity: bool = False, change_tracking: bool = True,
              schema_name: str | None = None, description: str = "", is_custom: bool = False) -> Table:
        t = Table(name, entity_set, pk, primary_name, otc, schema_name=schema_name or display.replace(" ", ""),
                  display=display, display_collection=plural, ownership=ownership, is_activity=activity,
                  change_tracking=change_tracking, description=description, is_custom=is_custom)
        self.schema.add_table(t)
        t.add(Column(pk, "Uniqueidentifier", display=display, is_primary_id=True))
        lookups: list[tuple[LookupSpec, Column]] = []
        for spec in cols:
            if isinstance(spec, LookupSpec):
                col = Column(spec.name, spec.kind, display=spec.display, targets=tuple(spec.targets))
                lookups.append((spec, col))
                t.add(col)
            else:
                t.add(spec)
        t.columns[primary_name].is_primary_name = True
        t.columns[primary_name].required = "ApplicationRequired"
        if state:
            t.add(Column("statecode", "State", display="Status", option_set=state[0]))
            t.add(Column("statuscode", "Status", display="Status Reason", option_set=state[1]))
        system = [
            (datetime_column("createdon", "Created On"), None), (datetime_column("modifiedon", "Modified On"), None),
            (Column("versionnumber", "BigInt", display="Version Number"), None),
        ]
        for col, _ in system:
            col.writable = False
            t.add(col)
        for who in ("createdby", "modifiedby", "createdonbehalfby", "modifiedonbehalfby"):
            spec = LookupSpec(who, {"systemuser": (f"lk_{name}_{who}", who)})
            col = t.add(Column(who, "Lookup", targets=("systemuser",), writable=False))
            lookups.append((spec, col))
        if ownership == "UserOwned":
            spec = LookupSpec("ownerid", {"systemuser": (f"user_{entity_set}", "ownerid"),
                                 "team": (f"team_{entity_set}", "ownerid")}, "Owner", kind="Owner")
            lookups.append((spec, t.add(Column("ownerid", "Owner", display="Owner", targets=("systemuser", "team")))))
            spec = LookupSpec("owningbusinessunit", {"businessunit": (f"business_unit_{entity_set}", "owningbusinessunit")})
            lookups.append((spec, t.add(Column("owningbusinessunit", "Lookup", targets=("businessunit",), writable=False))))
        if any(c.type == "Money" for c in t.columns.values()):
            spec = LookupSpec("transactioncurrencyid", {"transactioncurrency": (f"TransactionCurrency_{t.schema_name}", "transactioncurrencyid")})
            lookups.append((spec, t.add(Column("transactioncurrencyid", "Lookup", display="Currency", targets=("transactioncurrency",)))))
            t.add(decimal_column("exchangerate", "Exchange Rate", precision=10))
        for key_name, key_cols in keys:
            t.keys.append(AlternateKey(key_name, tuple(key_cols), display=key_name))
        for spec, col in lookups:
            for target, (rel, nav) in spec.targets.items():
                self.pending.append(OneToMany(rel, target, name, col.name, nav))
        for col in t.columns.values():
            col.schema_name = col.schema_name if col.schema_name != col.name else schema_name_of(col.name)
        return t


def schema_name_of(name: str) -> str:
    return name[:1].upper() + name[1:]
