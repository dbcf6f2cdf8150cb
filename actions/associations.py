"""Link and unlink two rows through a relationship (1:N, N:1 or N:N), picked by name.

The relationship is named as a designer sees it in the picker (its schema name, such as
``accountleads_association``) or by its navigation property (``parentaccountid``). Metadata tells
which navigation property to use, which table is on the other side and whether it is
single-valued (``PUT``/``DELETE .../nav/$ref``) or a collection (``POST .../nav/$ref``,
``DELETE ...?$id=``).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, model_validator

from d365_components import Action, Context, InputField
from d365_components.actions._common import (
    EXAMPLE_ID,
    alternate_key_field,
    conflict,
    entity_id_field,
    entity_type_field,
    impersonate_field,
    impersonation_headers,
    plain_id,
)
from d365_components.actions._lookups import Relationship, TableInfo, metadata_for
from d365_components.actions.records import _Addressed
from d365_components.connections.odata import entity_path
from d365_components.conventions import NAME, NAME_PATTERN, RELATIONSHIPS
from d365_components.errors import DataverseError, FieldError, InputValidationError
from d365_components.inputs import absent, exactly_one, forbidden, given, rules

__all__ = ["AssociateEntities", "DisassociateEntities"]

ALREADY_ASSOCIATED = "0x80040237"


_RELATED_AT_MOST_ONE = forbidden(
    "give relatedEntityId or relatedAlternateKey, not both", ["relatedEntityId", "relatedAlternateKey"],
    given("relatedEntityId"), given("relatedAlternateKey"),
)


class _LinkInputs(_Addressed):
    model_config = ConfigDict(json_schema_extra=rules(exactly_one("entityId", "alternateKey"), _RELATED_AT_MOST_ONE))

    relationship: str = InputField(
        title="Relationship",
        description=(
            "The relationship's schema name (accountleads_association, contact_customer_accounts) or the "
            "navigation property (parentaccountid). For a self-referencing relationship the schema name "
            "makes this row the parent."
        ),
        examples=["accountleads_association", "contact_customer_accounts"],
        data_source=RELATIONSHIPS,
        data_source_inputs={"table": "entityType"},
        min_length=1,
        pattern=NAME_PATTERN,
    )
    related_entity_type: str | None = entity_type_field(
        default=None,
        title="Related table",
        description=(
            "The other row's table: its entity set name (leads) or logical name (lead); "
            "read from the relationship when empty."
        ),
        examples=["leads"],
    )
    related_entity_id: str | None = entity_id_field(
        None, title="Related row ID", table_input="relatedEntityType",
        description="The GUID of the other row. Give Related row ID or Related alternate key, not both.",
    )
    related_alternate_key: dict[str, Any] | None = alternate_key_field(
        "Related alternate key",
        'Find the other row by an alternate key instead of its ID, as JSON, e.g. {"accountnumber": "A-2"}. '
        "Give Related row ID or Related alternate key, not both.",
        {"accountnumber": "A-2"},
    )
    impersonate_user_id: str | None = impersonate_field()

    @model_validator(mode="after")
    def _at_most_one_related(self) -> _LinkInputs:
        if self.related_entity_id is not None and self.related_alternate_key is not None:
            raise conflict("give relatedEntityId or relatedAlternateKey, not both", "relatedEntityId", "relatedAlternateKey")
        for column in self.related_alternate_key or {}:
            if not NAME.match(column):
                raise conflict(f"'{column}' is not a column name", "relatedAlternateKey")
        return self

    def related_key(self) -> str | dict[str, Any] | None:
        if self.related_entity_id is not None:
            return self.related_entity_id
        return dict(self.related_alternate_key) if self.related_alternate_key else None


class _Link:
    """The resolved pieces of one link: tables, navigation property and its shape."""

    def __init__(self, table: TableInfo, related: TableInfo, relationship: Relationship) -> None:
        self.table, self.related, self.relationship = table, related, relationship


async def _resolve(ctx: Context, inputs: _LinkInputs) -> _Link:
    metadata = metadata_for(ctx.web_api)
    table = await metadata.table(inputs.entity_type)
    known = await metadata.relationships(table.logical_name) if table.logical_name else None
    if known is None:
        if not inputs.related_entity_type:
            raise InputValidationError([FieldError("/relatedEntityType", "is required when metadata cannot be read")])
        related = await metadata.table(inputs.related_entity_type, pointer="/relatedEntityType")
        return _Link(table, related, Relationship(inputs.relationship, inputs.relationship, related.logical_name or "", False, "OneToMany"))
    name = inputs.relationship
    candidates = (
        [r for r in known if r.nav_property == name]
        or [r for r in known if r.schema_name == name]
        or [r for r in known if name.lower() in (r.nav_property.lower(), r.schema_name.lower())]
    )
    if inputs.related_entity_type:
        related = await metadata.table(inputs.related_entity_type, pointer="/relatedEntityType")
        candidates = [r for r in candidates if r.related_table == related.logical_name] or candidates
    if not candidates:
        raise InputValidationError(
            [FieldError("/relationship", f"{table.logical_name} has no relationship or navigation property named '{name}'")]
        )
    # self-referencing: the schema name means "this row is the parent" (the collection side)
    relationship = sorted(candidates, key=lambda r: r.single_valued)[0]
    related = await metadata.table(relationship.related_table, pointer="/relationship")
    if inputs.related_entity_type:
        given = await metadata.table(inputs.related_entity_type, pointer="/relatedEntityType")
        if given.logical_name != related.logical_name:
            raise InputValidationError(
                [FieldError("/relatedEntityType", f"'{relationship.schema_name}' links {table.logical_name} to {related.logical_name}, not {given.logical_name}")]
            )
    return _Link(table, related, relationship)


_OUTPUT = {
    "type": "object",
    "required": ["entityType", "relationship", "navigationProperty", "relatedEntityType"],
    "properties": {
        "entityType": {"type": "string", "description": "Entity set of the row."},
        "id": {"type": ["string", "null"], "description": "The row's GUID, when given."},
        "relationship": {"type": "string", "description": "Schema name of the relationship used."},
        "navigationProperty": {"type": "string", "description": "The navigation property used."},
        "relatedEntityType": {"type": "string", "description": "Entity set of the other row."},
        "relatedId": {"type": ["string", "null"], "description": "The other row's GUID, when given."},
        "associated": {"type": "boolean", "description": "Whether the rows are now linked."},
        "alreadyAssociated": {"type": "boolean", "description": "True when the rows were linked before (N:N)."},
    },
}


def _output(inputs: _LinkInputs, link: _Link, **extra: Any) -> dict[str, Any]:
    return {
        "entityType": link.table.entity_set,
        "id": plain_id(inputs.entity_id) if inputs.entity_id else None,
        "relationship": link.relationship.schema_name,
        "navigationProperty": link.relationship.nav_property,
        "relatedEntityType": link.related.entity_set,
        "relatedId": plain_id(inputs.related_entity_id) if inputs.related_entity_id else None,
        **extra,
    }


def _headers(inputs: _LinkInputs) -> dict[str, str]:
    return impersonation_headers(inputs.impersonate_user_id)


class AssociateEntities(Action):
    """Link two rows through a relationship: add to a 1:N or N:N collection, or set a lookup."""

    key = "dynamics365.associate_entities"
    label = "Associate Entities"
    group = "Records"

    class Inputs(_LinkInputs):
        model_config = ConfigDict(json_schema_extra=rules(
            exactly_one("entityId", "alternateKey"), _RELATED_AT_MOST_ONE,
            forbidden("give relatedEntityId or relatedAlternateKey (exactly one)", ["relatedEntityId", "relatedAlternateKey"],
                      absent("relatedEntityId"), absent("relatedAlternateKey")),
        ))

        @model_validator(mode="after")
        def _needs_related(self) -> AssociateEntities.Inputs:
            if self.related_key() is None:
                raise conflict("give relatedEntityId or relatedAlternateKey (exactly one)", "relatedEntityId", "relatedAlternateKey")
            return self

    output_schema = _OUTPUT
    example = {
        "entityType": "accounts", "id": EXAMPLE_ID,
        "relationship": "accountleads_association", "navigationProperty": "accountleads_association",
        "relatedEntityType": "leads", "relatedId": "2a4901bf-9a39-e611-80d2-00155db44581",
        "associated": True, "alreadyAssociated": False,
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        link = await _resolve(ctx, inputs)
        body = {"@odata.id": f"{ctx.web_api.api_url}/{entity_path(link.related.entity_set, inputs.related_key())}"}
        path = f"{entity_path(link.table.entity_set, inputs.key())}/{link.relationship.nav_property}/$ref"
        already = False
        try:
            await ctx.web_api.request("PUT" if link.relationship.single_valued else "POST", path, json=body, headers=_headers(inputs))
        except DataverseError as exc:
            if (exc.code or "").lower() != ALREADY_ASSOCIATED or link.relationship.kind != "ManyToMany":
                raise
            already = True
        return _output(inputs, link, associated=True, alreadyAssociated=already)


class DisassociateEntities(Action):
    """Unlink two rows: remove from a 1:N or N:N collection, or clear a lookup."""

    key = "dynamics365.disassociate_entities"
    label = "Disassociate Entities"
    group = "Records"

    class Inputs(_LinkInputs):
        pass

    output_schema = _OUTPUT
    example = {
        "entityType": "accounts", "id": EXAMPLE_ID,
        "relationship": "accountleads_association", "navigationProperty": "accountleads_association",
        "relatedEntityType": "leads", "relatedId": "2a4901bf-9a39-e611-80d2-00155db44581", "associated": False,
    }

    async def perform(self, ctx: Context, inputs: Inputs) -> dict[str, Any]:
        link = await _resolve(ctx, inputs)
        path = f"{entity_path(link.table.entity_set, inputs.key())}/{link.relationship.nav_property}/$ref"
        params = None
        if not link.relationship.single_valued:
            related_key = inputs.related_key()
            if related_key is None:
                raise InputValidationError(
                    [FieldError("/relatedEntityId", f"'{link.relationship.schema_name}' is a collection: give relatedEntityId or relatedAlternateKey")]
                )
            params = {"$id": f"{ctx.web_api.api_url}/{entity_path(link.related.entity_set, related_key)}"}
        await ctx.web_api.request("DELETE", path, params=params, headers=_headers(inputs))
        return _output(inputs, link, associated=False)
