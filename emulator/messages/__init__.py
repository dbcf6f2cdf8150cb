"""Messages: Dataverse functions and actions (a registry, the CRM messages, the bulk messages)."""
