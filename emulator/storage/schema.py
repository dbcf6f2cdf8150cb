"""The emulator's table definitions: tables, columns, option sets, keys and relationships.

Plain dataclasses, filled by emulator/storage/standard_tables.py and extended at run time by the metadata API.
`Schema.link()` derives each table's navigation properties from the relationships, so a lookup
column, its relationship and the navigation property names can never disagree:

* a 1:N relationship gives the referencing table a single-valued navigation property
  (`primarycontactid`, `parentcustomerid_account`) over its lookup column, and the referenced table
  a collection-valued one named after the relationship (`contact_customer_accounts`);
* an N:N relationship gives both tables a collection-valued navigation property over the
  intersect table.

A lookup with several targets (Customer, Owner, regarding) keeps the target's logical name in a
hidden companion column `<lookup>type` (see `Column.type_column`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status"})
TEXT_TYPES = frozenset({"String", "Memo", "EntityName", "MultiSelectPicklist"})
INTEGER_TYPES = frozenset({"Integer", "BigInt", "Picklist", "State", "Status", "Boolean"})
REAL_TYPES = frozenset({"Decimal", "Double", "Money"})
EDM_TYPES = {
    "String": "Edm.String", "Memo": "Edm.String", "EntityName": "Edm.String", "MultiSelectPicklist": "Edm.String",
    "Integer": "Edm.Int32", "BigInt": "Edm.Int64", "Picklist": "Edm.Int32", "State": "Edm.Int32",
    "Status": "Edm.Int32", "Boolean": "Edm.Boolean", "Decimal": "Edm.Decimal", "Double": "Edm.Double",
    "Money": "Edm.Decimal", "DateTime": "Edm.DateTimeOffset", "Uniqueidentifier": "Edm.Guid",
    "Lookup": "Edm.Guid", "Customer": "Edm.Guid", "Owner": "Edm.Guid",
    "Image": "Edm.Binary",            # read with the record as the base64 thumbnail
}


def new_id() -> str:
    return str(uuid.uuid4())


@cache
def stable_id(*parts: str) -> str:
    """A MetadataId that stays the same across runs, so clients may cache it."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "d365-emulator:" + ":".join(parts)))


@dataclass
class Option:
    value: int
    label: str
    state: int | None = None          # for status reasons: the state they belong to
    color: str | None = None


@dataclass
class OptionSet:
    name: str
    options: list[Option]
    kind: str = "Picklist"            # Picklist, State, Status, Boolean, MultiSelectPicklist
    is_global: bool = False
    display: str = ""
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.metadata_id = self.metadata_id or stable_id("optionset", self.name)
        self._labels = {o.value: o.label for o in self.options}

    def label(self, value: Any) -> str | None:
        return self._labels.get(value)

    def values(self) -> list[int]:
        return [o.value for o in self.options]

    def refresh(self) -> None:
        self._labels = {o.value: o.label for o in self.options}


@dataclass
class Column:
    name: str
    type: str
    schema_name: str = ""
    display: str = ""
    description: str = ""
    max_length: int | None = None
    option_set: OptionSet | None = None
    targets: tuple[str, ...] = ()
    precision: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    format: str | None = None
    required: str = "None"
    is_custom: bool = False
    is_primary_id: bool = False
    is_primary_name: bool = False
    writable: bool = True             # False for system-managed columns (createdon, versionnumber, ...)
    can_store_full_image: bool = False  # Image columns: keep the full-size image besides the thumbnail
    metadata_id: str = ""
    table: str = ""

    def __post_init__(self) -> None:
        self.schema_name = self.schema_name or self.name
        self.display = self.display or self.name

    @property
    def is_lookup(self) -> bool:
        return self.type in LOOKUP_TYPES

    @property
    def type_column(self) -> str | None:
        """The hidden column holding the target table of a lookup with several targets."""
        return self.name + "type" if self.is_lookup and len(self.targets) > 1 else None

    @property
    def sql_type(self) -> str:
        if self.type in INTEGER_TYPES:
            return "INTEGER"
        if self.type in REAL_TYPES:
            return "REAL"
        if self.type in TEXT_TYPES:
            return "TEXT COLLATE NOCASE"
        return "TEXT"

    @property
    def edm_type(self) -> str:
        return EDM_TYPES.get(self.type, "Edm.String")

    @property
    def json_name(self) -> str:
        """Name of the property in JSON: lookups read as `_<name>_value`."""
        return f"_{self.name}_value" if self.is_lookup else self.name


@dataclass
class AlternateKey:
    name: str
    columns: tuple[str, ...]
    display: str = ""
    metadata_id: str = ""
    status: str = "Active"            # EntityKeyIndexStatus: Pending, InProgress, Active, Failed
    job_id: str = ""                  # the asyncoperation that builds its index
    is_custom: bool = False


@dataclass(frozen=True)
class Removed:
    """A table or column deleted at schema `version` (RetrieveMetadataChanges lists it as DeletedMetadata)."""

    version: int
    kind: str                         # "Entity" or "Attribute"
    metadata_id: str
    table_id: str = ""                # an attribute's table (its definition changed too)


@dataclass
class OneToMany:
    """referenced (1) -> referencing (N) over the referencing table's lookup column."""

    schema_name: str
    referenced: str
    referencing: str
    referencing_attribute: str
    referencing_nav: str
    referenced_attribute: str = ""
    is_custom: bool = False
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.metadata_id = self.metadata_id or stable_id("rel", self.schema_name)

    @property
    def referenced_nav(self) -> str:
        return self.schema_name


@dataclass
class ManyToMany:
    schema_name: str
    entity1: str
    entity2: str
    intersect: str
    is_custom: bool = False
    metadata_id: str = ""

    def __post_init__(self) -> None:
        self.metadata_id = self.metadata_id or stable_id("rel", self.schema_name)


@dataclass(frozen=True)
class SingleNav:
    """A single-valued navigation property: follows `column` to one of `targets`."""

    name: str
    column: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class CollectionNav:
    """A collection-valued navigation property: rows of `target` related to this row."""

    name: str
    target: str
    relationship: OneToMany | ManyToMany
    column: str = ""                  # 1:N: the target's lookup column pointing back here
    intersect: str = ""               # N:N: intersect table and its two id columns
    own_id: str = ""
    target_id: str = ""

    @property
    def many_to_many(self) -> bool:
        return bool(self.intersect)


@dataclass
class Table:
    logical_name: str
    entity_set: str
    primary_id: str
    primary_name: str
    object_type_code: int
    schema_name: str = ""
    display: str = ""
    display_collection: str = ""
    description: str = ""
    ownership: str = "UserOwned"      # UserOwned, OrganizationOwned
    is_custom: bool = False
    is_activity: bool = False
    change_tracking: bool = True
    columns: dict[str, Column] = field(default_factory=dict)
    keys: list[AlternateKey] = field(default_factory=list)
    primary_image: str | None = None  # the image column shown as the record's picture
    metadata_id: str = ""
    single_navs: dict[str, SingleNav] = field(default_factory=dict)
    collection_navs: dict[str, CollectionNav] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.schema_name = self.schema_name or self.logical_name.capitalize()
        self.display = self.display or self.schema_name
        self.display_collection = self.display_collection or self.display + "s"
        self.metadata_id = self.metadata_id or stable_id("table", self.logical_name)

    def add(self, column: Column) -> Column:
        column.table = self.logical_name
        column.metadata_id = column.metadata_id or stable_id("column", self.logical_name, column.name)
        self.columns[column.name] = column
        return column

    def column_for_json(self, name: str) -> Column | None:
        """The column behind a JSON property name (`name`, or `_x_value` for lookups)."""
        col = self.columns.get(name)
        if col is not None:
            return col
        if name.startswith("_") and name.endswith("_value"):
            col = self.columns.get(name[1:-6])
            if col is not None and col.is_lookup:
                return col
        return None


class Schema:
    """All tables and relationships; `version` changes with every schema change."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {}
        self.by_set: dict[str, Table] = {}
        self.relationships: dict[str, OneToMany | ManyToMany] = {}
        self.option_sets: dict[str, OptionSet] = {}
        self.version = 1
        self.removed: list[Removed] = []
        self.stamps: dict[int, dict[str, str]] = {}   # RetrieveMetadataChanges: stamp -> table fingerprints

    def add_table(self, table: Table) -> Table:
        self.tables[table.logical_name] = table
        self.by_set[table.entity_set] = table
        return table

    def add_relationship(self, rel: OneToMany | ManyToMany) -> None:
        if rel.schema_name in self.relationships:
            raise ValueError(f"duplicate relationship {rel.schema_name}")
        self.relationships[rel.schema_name] = rel

    def table(self, logical_name: str) -> Table:
        return self.tables[logical_name]

    def link(self) -> None:
        """(Re)derive every table's navigation properties from the relationships."""
        for table in self.tables.values():
            table.single_navs.clear()
            table.collection_navs.clear()
        for rel in self.relationships.values():
            if isinstance(rel, OneToMany):
                referencing = self.tables[rel.referencing]
                referenced = self.tables[rel.referenced]
                rel.referenced_attribute = rel.referenced_attribute or referenced.primary_id
                col = referencing.columns[rel.referencing_attribute]
                nav = referencing.single_navs.get(rel.referencing_nav)
                targets = (nav.targets if nav else ()) + (rel.referenced,)
                referencing.single_navs[rel.referencing_nav] = SingleNav(rel.referencing_nav, col.name, targets)
                referenced.collection_navs[rel.referenced_nav] = CollectionNav(
                    rel.referenced_nav, rel.referencing, rel, column=col.name)
            else:
                t1, t2 = self.tables[rel.entity1], self.tables[rel.entity2]
                t1.collection_navs[rel.schema_name] = CollectionNav(
                    rel.schema_name, rel.entity2, rel, intersect=rel.intersect,
                    own_id=t1.primary_id, target_id=t2.primary_id)
                t2.collection_navs[rel.schema_name] = CollectionNav(
                    rel.schema_name, rel.entity1, rel, intersect=rel.intersect,
                    own_id=t2.primary_id, target_id=t1.primary_id)
        self.version += 1

    def nav_for_lookup(self, table: Table, column: str, target: str) -> str | None:
        """The single-valued navigation property that binds `column` to `target`."""
        for nav in table.single_navs.values():
            if nav.column == column and target in nav.targets:
                return nav.name
        return None
