"""The service document and the CSDL $metadata document, built from the schema."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from d365_components.emulator.request.context import Ctx, Reply
from d365_components.emulator.storage.schema import Schema

# ---- service document and CSDL ------------------------------------------------------------

def service_document(ctx: Ctx) -> Reply:
    sets = [{"name": t.entity_set, "kind": "EntitySet", "url": t.entity_set} for t in ctx.schema.tables.values()]
    sets += [{"name": n, "kind": "EntitySet", "url": n}
             for n in ("EntityDefinitions", "RelationshipDefinitions", "GlobalOptionSetDefinitions")]
    return Reply.json(200, {"@odata.context": f"{ctx.api}/$metadata", "value": sets})


def csdl(ctx: Ctx) -> Reply:
    key = ("csdl", ctx.schema.version)
    cache = ctx.store.plans
    if key not in cache:
        cache[key] = _build_csdl(ctx.schema).encode()
    return Reply(200, cache[key], {"Content-Type": "application/xml"})


def _build_csdl(schema: Schema) -> str:
    out = ['<?xml version="1.0" encoding="utf-8"?>',
           '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
           '<edmx:DataServices>',
           '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
           '<EntityType Name="crmbaseentity" Abstract="true"/>']
    for t in schema.tables.values():
        out.append(f'<EntityType Name={quoteattr(t.logical_name)} BaseType="mscrm.crmbaseentity">')
        out.append(f'<Key><PropertyRef Name={quoteattr(t.primary_id)}/></Key>')
        for c in t.columns.values():
            out.append(f'<Property Name={quoteattr(c.json_name)} Type="{c.edm_type}"/>')
        for single in t.single_navs.values():
            out.append(f'<NavigationProperty Name={quoteattr(single.name)} Type="mscrm.{single.targets[0]}"/>')
        for nav in t.collection_navs.values():
            out.append(f'<NavigationProperty Name={quoteattr(nav.name)} Type="Collection(mscrm.{nav.target})"/>')
        out.append('</EntityType>')
    out.append('<ComplexType Name="WhoAmIResponse"><Property Name="BusinessUnitId" Type="Edm.Guid"/>'
               '<Property Name="UserId" Type="Edm.Guid"/><Property Name="OrganizationId" Type="Edm.Guid"/></ComplexType>')
    out.append('<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" Nullable="false"/></Function>')
    out.append('<EntityContainer Name="System">')
    for t in schema.tables.values():
        out.append(f'<EntitySet Name={quoteattr(t.entity_set)} EntityType="Microsoft.Dynamics.CRM.{t.logical_name}"/>')
    out.append('<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI"/>')
    out.append('</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>')
    return "\n".join(out)
