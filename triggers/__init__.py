"""Triggers: Dataverse tells a flow that rows changed, by webhook or by polling.

================  ===========================================================================
``webhook``       ``dynamics365.webhook``: receive, verify (key in constant time, size) and parse
                  Dataverse's webhook calls; register and remove them on deploy and delete
``registration``  the serviceendpoint, steps and images a webhook needs, reconciled by name
``payload``       RemoteExecutionContext JSON -> a plain event (old and new values, images)
``polling``       ``dynamics365.changed_rows``: changes since a JSON cursor, exactly once
================  ===========================================================================

The server that hosts webhook triggers is ``d365_components.webhook_host`` (it runs definitions,
it is not one).
"""
