"""Connections to Dataverse (OAuth through msal) and the Web API client they open (httpx).

=================  ==========================================================================
``oauth``          the connection plugins: client credentials (secret or certificate) and
                   authorization code with PKCE; ``connection.test()`` and ``open_client()``
``client``         :class:`WebApiClient`: request, CRUD, upsert modes, links, paging,
                   FetchXML paging, ``$batch``, functions and actions
``tokens``         msal apps, the token cache (memory or a 0600 file) and ``BearerAuth``
``retry``          :class:`RetryPolicy` and the concurrency :class:`Limiter`
``batch``          the ``$batch`` multipart encoder and decoder
``paging``         :class:`Page` and the FetchXML paging cookie
``odata``          literals (``quote``) and key segments (``format_key``, ``entity_path``)
``headers``        impersonation, bypass and duplicate-detection headers
``errors_map``     Dataverse and Entra ID error answers -> typed errors with hints
``clouds``         national clouds and org URL normalization
``extract``        tables as streams (incremental by modifiedon, full, change tracking) with one
                   resumable state: the engine under ``d365 extract`` and Extract Changes
``input_errors``   :class:`RequestInputError`: a request that cannot be built from its inputs
=================  ==========================================================================
"""

from d365_components.connections.batch import BatchOperation, BatchResult
from d365_components.connections.client import WebApiClient
from d365_components.connections.headers import control_headers
from d365_components.connections.odata import RawLiteral, entity_path, format_key, quote
from d365_components.connections.paging import Page
from d365_components.connections.retry import Limiter, RetryPolicy

__all__ = [
    "BatchOperation",
    "BatchResult",
    "Limiter",
    "Page",
    "RawLiteral",
    "RetryPolicy",
    "WebApiClient",
    "control_headers",
    "entity_path",
    "format_key",
    "quote",
]
