"""What one Web API request carries through the data plane, and what it answers with.

`Ctx` is built once per request by app.dispatch (after the token is verified and the caller
mapped to a systemuser) and handed to records, metadata and message handlers; `Reply` is what
they return. Message handlers added by other modules receive the same `Ctx`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from d365_components.emulator.protocol.errors import bad_request
from d365_components.emulator.protocol.literals import split_top
from d365_components.emulator.storage.schema import Schema
from d365_components.emulator.storage.store import Store

JSON_TYPE = "application/json; odata.metadata=minimal"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        h = {"Content-Type": JSON_TYPE}
        if headers:
            h.update(headers)
        return cls(status, json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(), h)

    @classmethod
    def empty(cls, status: int = 204, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, b"", headers or {})


@dataclass
class Ctx:
    state: Any                        # app.state: .store, .schema, .org_url
    method: str
    api: str                          # absolute Web API base, e.g. https://host/api/data/v9.2
    path: str                         # resource path below the base, decoded, no leading '/'
    raw_query: str                    # the query string as received (still percent-encoded)
    query: dict[str, str]             # decoded query options and parameter aliases
    headers: dict[str, str]           # lower-case names
    body: bytes
    caller: dict[str, Any]                      # verified token claims
    user_id: str                      # the effective systemuser (impersonated, if asked)
    on_behalf_of: str | None          # the real caller when impersonating
    business_unit_id: str
    applied: list[str] = field(default_factory=list)   # Preference-Applied values
    _prefer: dict[str, str] | None = None
    _annotations: list[str] | None = None
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict)          # per-request lookups (formatted lookup names)

    @property
    def store(self) -> Store:
        store: Store = self.state.store
        return store

    @property
    def schema(self) -> Schema:
        schema: Schema = self.state.store.schema
        return schema

    @property
    def prefer(self) -> dict[str, str]:
        if self._prefer is None:
            self._prefer = {}
            for item in split_top(self.headers.get("prefer", "")):
                name, _, value = item.partition("=")
                self._prefer[name.strip().lower()] = value.strip()
        return self._prefer

    def wants_representation(self) -> bool:
        if self.prefer.get("return") == "representation":
            self.applied.append("return=representation")
            return True
        return False

    @property
    def annotations(self) -> list[str]:
        """Patterns from `Prefer: odata.include-annotations` (empty = none requested)."""
        if self._annotations is None:
            raw = self.prefer.get("odata.include-annotations")
            self._annotations = []
            if raw:
                value = raw.strip('"')
                self._annotations = [p.strip() for p in value.split(",") if p.strip()]
                self.applied.append(f'odata.include-annotations="{value}"')
        return self._annotations

    def wants(self, annotation: str) -> bool:
        return any(fnmatchcase(annotation, p) for p in self.annotations)

    def json_body(self) -> dict[str, Any]:
        if not self.body:
            raise bad_request("The request body is empty; a JSON object was expected.")
        try:
            data = json.loads(self.body)
        except json.JSONDecodeError as exc:
            raise bad_request(f"Invalid JSON in the request body: {exc.msg} at position {exc.pos}.") from None
        if not isinstance(data, dict):
            raise bad_request("The request body must be a JSON object.")
        return data
