"""The request context every handler gets (`Ctx`: method, path, query, headers, body, caller, store) and its `Reply`."""
