"""Conventions every layer shares: how Dataverse identifiers look, and the data sources that fill
the dropdowns of generated forms.

Connections check keys and names before building a URL, actions and triggers publish the same
rules in their input schemas; both read them from here so the two never drift apart.

Each identifier comes twice:

- ``*_PATTERN`` is a JSON Schema ``pattern``. Published schemas are read by ECMAScript regex
  engines (Ajv, rjsf), where ``^...$`` is the whole string.
- the compiled regex (``GUID``, ``NAME``...) is for Python code. It is anchored with ``\\A...\\Z``:
  in Python ``$`` also matches before a trailing newline, so ``^...$`` would accept ``"name\\n"``.
"""

from __future__ import annotations

import re

__all__ = [
    "CHOICE_OPTIONS",
    "COLUMNS",
    "DOTTED_NAME",
    "DOTTED_NAME_PATTERN",
    "GUID",
    "GUID_ANYWHERE",
    "GUID_PATTERN",
    "NAME",
    "NAME_OR_GUID_PATTERN",
    "NAME_PATTERN",
    "RECORDS",
    "RELATIONSHIPS",
    "TABLES",
    "TABLE_DEFINITIONS",
]

_GUID = r"\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?"
#: a logical name of a table or column, an entity set name, a navigation property
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: a name that may be qualified (a custom API's, a message's, Microsoft.Dynamics.CRM.x)
_DOTTED_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"

#: a row's primary key, braces optional
GUID_PATTERN = rf"^{_GUID}$"
NAME_PATTERN = rf"^{_NAME}$"
DOTTED_NAME_PATTERN = rf"^{_DOTTED_NAME}$"
#: a table given by logical name or by MetadataId
NAME_OR_GUID_PATTERN = rf"^(?:{_NAME}|{_GUID})$"

GUID = re.compile(rf"\A{_GUID}\Z")
NAME = re.compile(rf"\A{_NAME}\Z")
DOTTED_NAME = re.compile(rf"\A{_DOTTED_NAME}\Z")
#: a GUID inside longer text (to mask row ids in messages)
GUID_ANYWHERE = re.compile(_GUID)

# -- data sources: keys of the dropdown fillers (defined in actions/data_sources.py) --------------

#: tables; value: entity set name
TABLES = "dynamics365.tables"
#: tables; value: logical name
TABLE_DEFINITIONS = "dynamics365.table_definitions"
COLUMNS = "dynamics365.columns"
CHOICE_OPTIONS = "dynamics365.choice_options"
RELATIONSHIPS = "dynamics365.relationships"
RECORDS = "dynamics365.records"
