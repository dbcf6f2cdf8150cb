"""The Web API surface: the ASGI app, its routing and $batch."""
