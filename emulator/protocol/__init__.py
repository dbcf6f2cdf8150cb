"""The Web API's wire vocabulary shared by every layer: request context and reply, Dataverse error codes and bodies, OData literals and annotations."""
