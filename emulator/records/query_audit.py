"""Which system query options each kind of entity-set request accepts, and Dataverse's error for the rest.

The emulator never answers 200 while skipping part of a request: a `$` option that a request shape
does not use (a `$filter` on a single record, `$skip` anywhere, `$top` on a delete...) is a 400,
as the service answers it. Collection queries, `$apply`, FetchXML and `?sql=` check their own.
"""

from __future__ import annotations

from d365_components.emulator.protocol.errors import QUERY_NOT_SUPPORTED, DataverseError, bad_request
from d365_components.emulator.request.context import Ctx

SINGLE = frozenset({"$select", "$expand"})
COLLECTION_ONLY = frozenset({"$filter", "$orderby", "$count", "$skip", "$top", "$skiptoken", "$apply"})
NONE: frozenset[str] = frozenset()
QUERY_LANGUAGES = ("fetchXml", "sql")        # parameters, not `$` options, but never to be ignored


def not_a_collection() -> DataverseError:
    return bad_request("The query specified in the URI is not valid. The requested resource is not a collection. "
                       "Query options $filter, $orderby, $count, $skip, and $top can be applied only on collections.")


def unsupported_option(name: str) -> DataverseError:
    return bad_request(f"The query parameter {name} is not supported", QUERY_NOT_SUPPORTED)


def allow_options(ctx: Ctx, allowed: frozenset[str], single: bool = False) -> None:
    """Refuse every `$` option of the request that is not in `allowed`."""
    for name in ctx.query:
        if name.startswith("$") and name not in allowed:
            if single and name in COLLECTION_ONLY:
                raise not_a_collection()
            raise unsupported_option(name)
