"""Metadata: EntityDefinitions, RelationshipDefinitions, GlobalOptionSetDefinitions and the CSDL document."""
