"""Limits: fault injection and the service protection limits."""
