"""The error for an input that cannot become a request: a URL with control characters, a link to
another host, a key column that is not a name, FetchXML that is malformed, too deep or too large.

It is an :class:`~d365_components.errors.InputValidationError` (so only library errors escape an
action) and also a ``ValueError`` (so callers that caught the plain ``ValueError`` these checks
used to raise keep working). The client does not know which input a URL came from: the pointer
is empty unless the caller gives one; :meth:`RequestInputError.at` re-points it to the field.
"""

from __future__ import annotations

from d365_components.errors import FieldError, InputValidationError

__all__ = ["RequestInputError"]


class RequestInputError(InputValidationError, ValueError):
    """An input that cannot be sent: ``reason`` says why, ``pointer`` (when known) names the field."""

    def __init__(self, reason: str, *, pointer: str = "") -> None:
        self.reason = reason
        super().__init__([FieldError(pointer, reason)], subject="request input" if not pointer else "inputs")

    def at(self, pointer: str) -> RequestInputError:
        """The same error, naming the input field (a JSON pointer such as ``/url``) that caused it."""
        return RequestInputError(self.reason, pointer=pointer)
