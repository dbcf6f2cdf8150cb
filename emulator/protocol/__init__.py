"""The Web API's wire vocabulary shared by every layer: Dataverse error codes and bodies, OData literals, instance annotations."""
