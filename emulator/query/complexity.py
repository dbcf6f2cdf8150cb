"""Query complexity limits: a query Dataverse could not run is refused before any SQL is built.

Dataverse runs a query as one SQL Server statement whose values are parameters, and SQL Server
takes at most 2,100 parameters per statement: a FetchXML or `$filter` with more condition values
(conditions plus `in`-list values) fails there. The emulator refuses the same queries up front,
which also keeps SQLite from spending minutes planning a 50,000-term `or` (its planner is
quadratic in the number of terms) while other requests wait.

Dataverse also joins at most 15 tables into one query: 15 link-entities in a FetchXML (checked by
the FetchXML parser, `fetchxml_parse.MAX_LINKS`) and 15 `$expand` options, nested ones included
(`check_expand`; documented: "limited to no more than 15 $expand options in a query").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol
from xml.etree.ElementTree import Element

from d365_components.emulator.protocol.errors import INVALID_ARGUMENT, DataverseError, bad_request

MAX_EXPANDS = 15
MAX_VALUES = 2100          # SQL Server's limit of parameters in one statement
# UNCONFIRMED: the code Dataverse answers when SQL Server refuses the statement is its "Generic SQL
# error" (0x80044150); the HTTP status (400 here: resending cannot help) and the wording are ours.
TOO_COMPLEX = "0x80044150"
_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")
_COMPARISON = re.compile(r"\s(?:eq|ne|gt|ge|lt|le)\s|\bMicrosoft\.Dynamics\.CRM\.\w+\(|,")


def too_complex(count: int, what: str) -> DataverseError:
    return DataverseError(400, TOO_COMPLEX,
                          f"Generic SQL error: the query is too complex. It has {count} {what}; "
                          f"at most {MAX_VALUES} are allowed in one query.")


def too_deep() -> DataverseError:
    """A `$filter` whose chain of operators is too long or too deeply nested to parse."""
    return DataverseError(400, TOO_COMPLEX, "Generic SQL error: the query is too complex. Its $filter nests "
                                            "or chains more operators than can be parsed.")


def check_fetch(root: Element) -> None:
    """A parsed `<fetch>`: its conditions and `<value>` elements together within `MAX_VALUES`."""
    count = sum(1 for el in root.iter() if el.tag in ("condition", "value"))
    if count > MAX_VALUES:
        raise too_complex(count, "conditions and condition values")


def check_filter(text: str) -> None:
    """`$filter` text: its comparisons and list items (commas) within `MAX_VALUES`; string
    literals are left out of the count, so their content never counts."""
    if len(text) < MAX_VALUES * 3:         # too short to hold that many comparisons
        return
    count = len(_COMPARISON.findall(_STRING_LITERAL.sub("''", text)))
    if count > MAX_VALUES:
        raise too_complex(count, "conditions and condition values")


class Expanding(Protocol):
    """An `$expand` item with its nested `$expand` items (`query_options.Expand`)."""

    @property
    def expand(self) -> Sequence[Expanding]: ...


def check_expand(items: Sequence[Expanding]) -> None:
    """Parsed `$expand` items: at most `MAX_EXPANDS` of them, nested ones included."""
    count = _count(items)
    if count > MAX_EXPANDS:
        # UNCONFIRMED: the message and code for $expand are the FetchXML link-entity limit's
        raise bad_request("Number of link entities in query exceeded maximum limit.", INVALID_ARGUMENT)


def _count(items: Sequence[Expanding]) -> int:
    return sum(1 + _count(item.expand) for item in items)
