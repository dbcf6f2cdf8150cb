"""Records: the entity-set requests of the Web API (CRUD, navigation, file columns, FetchXML execution)."""
