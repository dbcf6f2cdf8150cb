"""Metadata objects as the Web API shows them (EntityMetadata, AttributeMetadata, relationships, option sets), built from the schema as plain dicts."""

from __future__ import annotations

from typing import Any

from d365_components.emulator.storage.schema import (
    AlternateKey,
    Column,
    ManyToMany,
    OneToMany,
    Option,
    OptionSet,
    Schema,
    Table,
    stable_id,
)

NS = "Microsoft.Dynamics.CRM."
LANGUAGE = 1033
ATTRIBUTE_CLASS = {
    "String": "StringAttributeMetadata", "Memo": "MemoAttributeMetadata", "Integer": "IntegerAttributeMetadata",
    "BigInt": "BigIntAttributeMetadata", "Decimal": "DecimalAttributeMetadata", "Double": "DoubleAttributeMetadata",
    "Money": "MoneyAttributeMetadata", "Boolean": "BooleanAttributeMetadata", "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata", "Status": "StatusAttributeMetadata", "DateTime": "DateTimeAttributeMetadata",
    "Lookup": "LookupAttributeMetadata", "Customer": "LookupAttributeMetadata", "Owner": "LookupAttributeMetadata",
    "Uniqueidentifier": "UniqueIdentifierAttributeMetadata", "EntityName": "EntityNameAttributeMetadata",
    "MultiSelectPicklist": "MultiSelectPicklistAttributeMetadata",
    "File": "FileAttributeMetadata", "Image": "ImageAttributeMetadata",
}
TYPE_OF_CLASS = {v: k for k, v in ATTRIBUTE_CLASS.items() if k not in ("Customer", "Owner")}
CREATABLE = {"String", "Memo", "Integer", "BigInt", "Decimal", "Double", "Money", "Boolean", "Picklist",
             "DateTime", "MultiSelectPicklist", "File", "Image"}
ENTITY_NAVS = ("Attributes", "OneToManyRelationships", "ManyToOneRelationships", "ManyToManyRelationships", "Keys")


# ---- building metadata objects ------------------------------------------------------------

def label(text: str, owner_id: str = "") -> dict[str, Any]:
    if not text:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    item = {"Label": text, "LanguageCode": LANGUAGE, "IsManaged": True,
            "MetadataId": stable_id("label", owner_id, text), "HasChanged": None}
    return {"LocalizedLabels": [item], "UserLocalizedLabel": dict(item)}


def managed(value: object, name: str, can_change: bool = True) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": can_change, "ManagedPropertyLogicalName": name}


def entity_json(t: Table) -> dict[str, Any]:
    return {
        "MetadataId": t.metadata_id, "LogicalName": t.logical_name, "SchemaName": t.schema_name,
        "EntitySetName": t.entity_set, "LogicalCollectionName": t.entity_set,
        "CollectionSchemaName": t.schema_name + "s", "PrimaryIdAttribute": t.primary_id,
        "PrimaryNameAttribute": t.primary_name, "PrimaryImageAttribute": t.primary_image, "ObjectTypeCode": t.object_type_code,
        "OwnershipType": t.ownership if t.ownership != "BusinessOwned" else "BusinessOwned",
        "DisplayName": label(t.display, t.metadata_id), "DisplayCollectionName": label(t.display_collection, t.metadata_id),
        "Description": label(t.description, t.metadata_id),
        "IsCustomEntity": t.is_custom, "IsActivity": t.is_activity, "IsActivityParty": False, "IsChildEntity": False,
        "IsIntersect": False, "IsManaged": not t.is_custom, "IsPrivate": False, "IsLogicalEntity": False,
        "IsValidForAdvancedFind": True, "IsOptimisticConcurrencyEnabled": True, "ChangeTrackingEnabled": t.change_tracking,
        "IsAvailableOffline": True, "HasActivities": any(n.startswith(t.schema_name + "_") for n in t.collection_navs),
        "HasNotes": f"{t.logical_name.capitalize()}_Annotation" in t.collection_navs,
        "IsAuditEnabled": managed(False, "canmodifyauditsettings"), "IsCustomizable": managed(True, "iscustomizable"),
        "IsRenameable": managed(True, "isrenameable"), "IsMappable": managed(True, "ismappable"),
        "IsDuplicateDetectionEnabled": managed(False, "canmodifyduplicatedetectionsettings"),
        "CanCreateAttributes": managed(True, "cancreateattributes"), "IsValidForQueue": managed(False, "canmodifyqueuesettings"),
        "IsConnectionsEnabled": managed(False, "canmodifyconnectionsettings"),
        "CanChangeTrackingBeEnabled": managed(True, "canchangetrackingbeenabled"),
        "IntroducedVersion": "5.0.0.0", "EntityColor": None,
    }


def option_json(o: Option, owner: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"Value": o.value, "Color": o.color, "IsManaged": True, "ExternalValue": None, "ParentValues": [],
           "Tag": None, "IsHidden": False, "MetadataId": None, "HasChanged": None,
           "Label": label(o.label, f"{owner}:{o.value}"), "Description": label("")}
    if kind == "Status":
        out["State"] = o.state
    if kind == "State":
        out["InvariantName"] = o.label.replace(" ", "")
    return out


def option_set_json(s: OptionSet, table: Table | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"@odata.type": "#Microsoft.Dynamics.CRM.BooleanOptionSetMetadata" if s.kind == "Boolean"
           else "#Microsoft.Dynamics.CRM.OptionSetMetadata",
           "MetadataId": s.metadata_id, "Name": s.name if s.is_global or table is None else f"{table.logical_name}_{s.name}",
           "IsGlobal": s.is_global, "IsCustomOptionSet": False, "IsManaged": True,
           "OptionSetType": "Picklist" if s.kind == "MultiSelectPicklist" else s.kind,
           "DisplayName": label(s.display or s.name, s.metadata_id), "Description": label("")}
    if s.kind == "Boolean":
        by_value = {o.value: o for o in s.options}
        out["TrueOption"] = option_json(by_value[1], s.metadata_id, "Boolean")
        out["FalseOption"] = option_json(by_value[0], s.metadata_id, "Boolean")
    else:
        out["Options"] = [option_json(o, s.metadata_id, s.kind) for o in s.options]
    return out


def attribute_json(t: Table, c: Column, index: int, typed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "@odata.type": f"#{NS}{ATTRIBUTE_CLASS.get(c.type, 'AttributeMetadata')}",
        "MetadataId": c.metadata_id, "LogicalName": c.name, "SchemaName": c.schema_name, "EntityLogicalName": t.logical_name,
        "AttributeType": c.type, "AttributeTypeName": {"Value": f"{c.type}Type"}, "AttributeOf": None,
        "ColumnNumber": index, "DisplayName": label(c.display, c.metadata_id), "Description": label(c.description, c.metadata_id),
        "IsCustomAttribute": c.is_custom, "IsPrimaryId": c.is_primary_id, "IsPrimaryName": c.is_primary_name,
        "IsValidForCreate": c.writable, "IsValidForRead": True, "IsValidForUpdate": c.writable and not c.is_primary_id,
        "IsValidODataAttribute": True, "IsLogical": False, "IsManaged": not c.is_custom, "IsSecured": False,
        "IsFilterable": True, "IsSearchable": True, "IsRetrievable": True, "SourceType": 0,
        "RequiredLevel": managed("SystemRequired" if c.is_primary_id else c.required, "canmodifyrequirementlevelsettings"),
        "IsAuditEnabled": managed(True, "canmodifyauditsettings"),
        "IsValidForAdvancedFind": managed(True, "canmodifysearchsettings"),
    }
    if not typed:
        return out
    k = c.type
    if k == "String":
        out.update(MaxLength=c.max_length, DatabaseLength=(c.max_length or 0) * 2, Format="Text", FormatName={"Value": "Text"})
    elif k == "Memo":
        out.update(MaxLength=c.max_length, DatabaseLength=(c.max_length or 0) * 2, Format="TextArea")
    elif k in ("Integer", "BigInt"):
        out.update(MinValue=c.min_value, MaxValue=c.max_value, Format="None")
    elif k in ("Decimal", "Double"):
        out.update(MinValue=c.min_value, MaxValue=c.max_value, Precision=c.precision)
    elif k == "Money":
        out.update(MinValue=c.min_value, MaxValue=c.max_value, Precision=c.precision, PrecisionSource=2,
                   IsBaseCurrency=False)
    elif k == "File":
        out["MaxSizeInKB"] = int(c.max_value or 32768)
    elif k == "Image":
        out.update(MaxSizeInKB=int(c.max_value or 10240), CanStoreFullImage=c.can_store_full_image,
                   IsPrimaryImage=t.primary_image == c.name, MaxHeight=144, MaxWidth=144)
    elif k == "DateTime":
        out.update(Format=c.format or "DateAndTime",
                   DateTimeBehavior={"Value": "DateOnly" if c.format == "DateOnly" else "UserLocal"})
    elif c.is_lookup:
        out.update(Targets=list(c.targets), Format="None")
    elif c.option_set is not None:
        out["DefaultFormValue"] = -1 if k != "Boolean" else None
        if k == "Boolean":
            out["DefaultValue"] = False
    return out


def one_to_many_json(r: OneToMany) -> dict[str, Any]:
    return {
        "@odata.type": f"#{NS}OneToManyRelationshipMetadata",
        "MetadataId": r.metadata_id, "SchemaName": r.schema_name, "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": r.referenced, "ReferencedAttribute": r.referenced_attribute,
        "ReferencingEntity": r.referencing, "ReferencingAttribute": r.referencing_attribute,
        "ReferencedEntityNavigationPropertyName": r.referenced_nav,
        "ReferencingEntityNavigationPropertyName": r.referencing_nav,
        "IsCustomRelationship": r.is_custom, "IsManaged": not r.is_custom, "IsValidForAdvancedFind": True,
        "IsHierarchical": False, "SecurityTypes": "None", "IntroducedVersion": "5.0.0.0",
        "CascadeConfiguration": {"Assign": "NoCascade", "Delete": "RemoveLink", "Merge": "NoCascade",
                                 "Reparent": "NoCascade", "Share": "NoCascade", "Unshare": "NoCascade",
                                 "RollupView": "NoCascade"},
        "AssociatedMenuConfiguration": {"Behavior": "UseCollectionName", "Group": "Details", "Order": 10000,
                                        "Label": label("")},
    }


def many_to_many_json(r: ManyToMany, schema: Schema) -> dict[str, Any]:
    a, b = schema.tables[r.entity1], schema.tables[r.entity2]
    return {
        "@odata.type": f"#{NS}ManyToManyRelationshipMetadata",
        "MetadataId": r.metadata_id, "SchemaName": r.schema_name, "RelationshipType": "ManyToManyRelationship",
        "Entity1LogicalName": r.entity1, "Entity2LogicalName": r.entity2, "IntersectEntityName": r.intersect,
        "Entity1IntersectAttribute": a.primary_id, "Entity2IntersectAttribute": b.primary_id,
        "Entity1NavigationPropertyName": r.schema_name, "Entity2NavigationPropertyName": r.schema_name,
        "IsCustomRelationship": r.is_custom, "IsManaged": not r.is_custom, "IsValidForAdvancedFind": True,
        "SecurityTypes": "None", "IntroducedVersion": "5.0.0.0",
    }


def relationship_json(r: OneToMany | ManyToMany, schema: Schema) -> dict[str, Any]:
    return one_to_many_json(r) if isinstance(r, OneToMany) else many_to_many_json(r, schema)


def key_json(t: Table, k: AlternateKey) -> dict[str, Any]:
    k.metadata_id = k.metadata_id or stable_id("key", t.logical_name, k.name)
    return {"MetadataId": k.metadata_id, "LogicalName": k.name, "SchemaName": k.name, "EntityLogicalName": t.logical_name,
            "KeyAttributes": list(k.columns), "DisplayName": label(k.display or k.name, k.metadata_id),
            "EntityKeyIndexStatus": k.status, "IsManaged": not k.is_custom, "IsCustomizable": managed(True, "iscustomizable"),
            "AsyncJob": {"Id": k.job_id, "LogicalName": "asyncoperation"} if k.job_id else None}
