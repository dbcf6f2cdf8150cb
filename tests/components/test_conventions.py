"""The shared identifier patterns: whole strings only in Python, ECMAScript-valid where published."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from d365_components.conventions import (
    DOTTED_NAME,
    DOTTED_NAME_PATTERN,
    GUID,
    GUID_ANYWHERE,
    GUID_PATTERN,
    NAME,
    NAME_OR_GUID_PATTERN,
    NAME_PATTERN,
)

MANIFESTS = Path(__file__).parents[2] / "manifests"
ID = "7eb682f1-ca75-e511-80d4-00155d2a68d1"


@pytest.mark.parametrize(
    ("regex", "good", "bad"),
    [
        (GUID, [ID, "{" + ID.upper() + "}"], [ID + "\n", " " + ID, ID + "0", "not-a-guid"]),
        (NAME, ["accountid", "_parentid_value", "new_Thing2"], ["name\n", "2name", "a.b", "a-b", ""]),
        (DOTTED_NAME, ["Microsoft.Dynamics.CRM.WinOpportunity", "accounts"], ["a.b\n", ".a", "a b"]),
    ],
)
def test_compiled_patterns_match_whole_strings_only(regex: re.Pattern[str], good: list[str], bad: list[str]) -> None:
    assert all(regex.match(text) for text in good)
    assert not any(regex.match(text) for text in bad)


def test_published_patterns_agree_with_the_compiled_ones_on_single_lines() -> None:
    for pattern, regex, samples in [
        (GUID_PATTERN, GUID, [ID, "{" + ID + "}", ID + "0", "x"]),
        (NAME_PATTERN, NAME, ["account", "2a", "a.b", ""]),
        (DOTTED_NAME_PATTERN, DOTTED_NAME, ["a.b", ".a", "a b"]),
    ]:
        for text in samples:
            assert bool(re.search(pattern, text)) == bool(regex.match(text)), (pattern, text)
    assert re.search(NAME_OR_GUID_PATTERN, ID) and re.search(NAME_OR_GUID_PATTERN, "account")


def test_guid_anywhere_finds_ids_inside_text() -> None:
    assert GUID_ANYWHERE.sub("[id]", f"row {ID} failed") == "row [id] failed"


def test_published_schemas_use_no_python_only_anchors() -> None:
    """``\\A`` and ``\\Z`` mean something else (or nothing) to ECMAScript regex engines."""
    for path in sorted(MANIFESTS.glob("*.json")):
        text = json.dumps(json.loads(path.read_text()))
        assert "\\\\A" not in text and "\\\\Z" not in text, path.name
