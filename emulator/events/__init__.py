"""Events: webhooks (service endpoints and steps), change tracking, the RemoteExecutionContext body."""
