"""OData URL pieces: path segments, key/parameter lists and literal values.

`accounts(accountnumber='A/1')/Account_Tasks/$ref` splits into segments without being fooled by
quotes; `(AccessType=@p1,B='x')` and `(7eb6...)` parse into positional/named arguments; literal
values (`'O''Brian'`, `12`, GUIDs, `true`, enum members `Microsoft.Dynamics.CRM.X'Y'`, JSON-ish
arrays and objects with single or double quotes) become Python values.
"""

from __future__ import annotations

import json
import re
from typing import Any

from d365_components.emulator.protocol.errors import bad_request

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?([eE][+-]?\d+)?[mMdDlLfF]?$")
ENUM_RE = re.compile(r"^([A-Za-z_][\w.]*)'((?:[^']|'')*)'$")


class Guid(str):
    """A GUID literal (lower-case text), told apart from a quoted string."""


class Alias(str):
    """A parameter alias reference such as `@p1`."""


def split_path(path: str) -> list[str]:
    """Split a resource path on '/' outside quotes and parentheses."""
    if "'" not in path:                   # only quoted key values can hide a '/'
        return path.split("/")
    segments, start, depth, quote = [], 0, 0, False
    for i, ch in enumerate(path):
        if quote:
            if ch == "'":
                quote = False
        elif ch == "'":
            quote = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "/" and depth == 0:
            segments.append(path[start:i])
            start = i + 1
    segments.append(path[start:])
    return segments


def split_segment(segment: str) -> tuple[str, str | None]:
    """`accounts(123)` -> ('accounts', '123'); `accounts` -> ('accounts', None)."""
    if segment.endswith(")") and "(" in segment:
        i = segment.index("(")
        return segment[:i], segment[i + 1:-1]
    return segment, None


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside quotes, parentheses, brackets and braces."""
    if not any(c in text for c in "'\"([{"):
        return [p.strip() for p in text.split(sep) if p.strip()]
    parts, start, depth, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_args(text: str) -> tuple[object, dict[str, object]]:
    """`(guid)` or `(a='x',b=2)` -> (positional value or None, {name: value})."""
    positional, named = None, {}
    for part in split_top(text):
        m = re.match(r"^([A-Za-z_]\w*)\s*=(.*)$", part, re.S)
        if m and not part.startswith("'"):
            named[m.group(1)] = parse_literal(m.group(2).strip())
        else:
            positional = parse_literal(part)
    return positional, named


def parse_literal(text: str) -> Any:
    """One OData literal -> Python value (Guid, str, int, float, bool, None, list, dict, Alias)."""
    text = text.strip()
    if not text:
        raise bad_request("Syntax error: empty literal.")
    if text.startswith("@"):
        return Alias(text)
    if text[0] in "[{":
        return _Json(text).value()
    if text[0] == "'":
        if len(text) < 2 or not text.endswith("'") or re.search(r"(?<!')'(?!')", text[1:-1].replace("''", "")):
            raise bad_request(f"There is an unterminated literal at position 0 in '{text}'.")
        return text[1:-1].replace("''", "'")
    if text[0] == '"':
        return json.loads(text)
    if GUID_RE.match(text):
        return Guid(text.lower())
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if NUMBER_RE.match(text):
        body = text.rstrip("mMdDlLfF")
        return float(body) if any(c in body for c in ".eE") else int(body)
    m = ENUM_RE.match(text)
    if m:
        return m.group(2).replace("''", "'")
    return text


class _Json:
    """A lenient JSON reader that also accepts single-quoted strings (Dataverse samples use both)."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def value(self) -> Any:
        v = self._value()
        self._ws()
        if self.i != len(self.text):
            raise bad_request(f"Invalid JSON. Unexpected character at position {self.i} in '{self.text}'.")
        return v

    def _ws(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def _value(self) -> Any:
        self._ws()
        if self.i >= len(self.text):
            raise bad_request(f"Invalid JSON. Unexpected end of '{self.text}'.")
        ch = self.text[self.i]
        if ch == "[":
            self.i += 1
            items: list[Any] = []
            self._ws()
            if self.text[self.i:self.i + 1] == "]":
                self.i += 1
                return items
            while True:
                items.append(self._value())
                self._ws()
                ch = self.text[self.i:self.i + 1]
                self.i += 1
                if ch == "]":
                    return items
                if ch != ",":
                    raise bad_request(f"Invalid JSON. A comma character ',' was expected in scope 'Array'. '{self.text}'")
        if ch == "{":
            self.i += 1
            obj: dict[str, Any] = {}
            self._ws()
            if self.text[self.i:self.i + 1] == "}":
                self.i += 1
                return obj
            while True:
                key = self._value()
                self._ws()
                if self.text[self.i:self.i + 1] != ":":
                    raise bad_request(f"Invalid JSON. A colon character ':' was expected in scope 'Object'. '{self.text}'")
                self.i += 1
                obj[str(key)] = self._value()
                self._ws()
                ch = self.text[self.i:self.i + 1]
                self.i += 1
                if ch == "}":
                    return obj
                if ch != ",":
                    raise bad_request(f"Invalid JSON. A comma character ',' was expected in scope 'Object'. '{self.text}'")
        if ch in "'\"":
            j = self.i + 1
            while j < len(self.text) and self.text[j] != ch:
                j += 2 if self.text[j] == "\\" else 1
            if j >= len(self.text):
                raise bad_request(f"Invalid JSON. Unterminated string in '{self.text}'.")
            raw = self.text[self.i + 1:j]
            self.i = j + 1
            return raw if ch == "'" else json.loads(ch + raw + ch)
        m = re.compile(r"[^,\]\}\s]+").match(self.text, self.i)
        if m is None:
            raise bad_request(f"Invalid JSON. Expected a value at position {self.i} in '{self.text}'.")
        self.i = m.end()
        return parse_literal(m.group(0))
