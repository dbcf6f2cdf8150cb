"""Inputs to try on every definition: one valid example, and valid, invalid and boundary variations.

Shared by the agreement test (library, jsonschema and Ajv must give the same verdict on each) and
the renderer test (each example must submit in rjsf and JSON Forms with no validation error).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from d365_components.errors import InputValidationError
from d365_components.inputs import validate_inputs
from d365_components.registry import get_registry


def definitions() -> list[Any]:
    return sorted(get_registry().all().values(), key=lambda d: d.key)


def _types(prop: dict[str, Any]) -> list[str]:
    declared = prop.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def sample(prop: dict[str, Any]) -> Any:
    """A plausible value: the first example, the default, a choice, or something of the right type."""
    if prop.get("examples"):
        return copy.deepcopy(prop["examples"][0])
    if "default" in prop and prop["default"] is not None:
        return copy.deepcopy(prop["default"])
    if prop.get("enum"):
        return prop["enum"][0]
    if prop.get("oneOf") and "const" in prop["oneOf"][0]:
        return prop["oneOf"][0]["const"]
    types = _types(prop)
    if "string" in types:
        pattern = prop.get("pattern")
        candidates = ["Contoso", "7eb682f1-ca75-e511-80d4-00155d2a68d1", "contoso.onmicrosoft.com", "accounts", "https://contoso.crm.dynamics.com"]
        return next((c for c in candidates if not pattern or re.search(pattern, c)), None)
    if "integer" in types or "number" in types:
        return prop.get("minimum", 1)
    if "boolean" in types:
        return True
    if "array" in types:
        return []
    if "object" in types:
        return {}
    return None


def refusals(definition: Any, data: dict[str, Any]) -> dict[str, str] | None:
    """The library's errors (pointer -> message), or None when it accepts ``data``."""
    try:
        validate_inputs(definition.input_schema(), definition.Inputs, data)
    except InputValidationError as exc:
        return {e.pointer: e.message for e in exc.errors}
    return None


def example_inputs(definition: Any) -> dict[str, Any]:
    """Required inputs from their examples, then inputs added or removed until the library accepts."""
    schema = definition.input_schema()
    props = schema.get("properties", {})
    data = {name: sample(props[name]) for name in schema.get("required", [])}
    for _ in range(12):
        errors = refusals(definition, data)
        if errors is None:
            return data
        name = next(iter(errors)).split("/")[1] if next(iter(errors)).count("/") >= 1 else ""
        if name in data and name not in schema.get("required", []):
            del data[name]
        elif name in props and name not in data and sample(props[name]) is not None:
            data[name] = sample(props[name])
        else:
            break
    return data


def _boundaries(prop: dict[str, Any]) -> list[Any]:
    types = _types(prop)
    values: list[Any] = [None, "", "50", "true", 12, True, [], {}]
    for bound in ("minimum", "maximum"):
        if bound in prop:
            step = -1 if bound == "minimum" else 1
            values += [prop[bound], prop[bound] + step, str(prop[bound])]
    if "minLength" in prop:
        values.append("x" * max(prop["minLength"] - 1, 0))
    if "maxItems" in prop:
        values.append([{}] * (prop["maxItems"] + 1))
    if prop.get("format") in ("date-time", "date"):
        values += ["2025-06-30T09:00:00", "2025-06-30", "2025-06-30T09:00:00Z", "2025-06-30 09:00:00Z",
                   "2025-06-30T09:00:00+02:00", "2025-02-30T09:00:00Z", "2025-06-30t09:00:00z"]
    if prop.get("pattern"):
        values += ["not-a-guid", "{7EB682F1-CA75-E511-80D4-00155D2A68D1}", " accounts "]
    if "string" in types:
        values += ["a b", "Contoso"]
    if "integer" in types:
        values += [1.5, 0, -1]
    return values


def corpus(definition: Any) -> list[dict[str, Any]]:
    """At least ten inputs: the example, the empty input, each rule broken and each field's boundaries."""
    schema = definition.input_schema()
    props = schema.get("properties", {})
    base = example_inputs(definition)
    cases: list[dict[str, Any]] = [base, {}, {**base, "bogusInput": 1}]
    cases.append({name: sample(prop) for name, prop in props.items() if sample(prop) is not None})
    for name in base:
        cases.append({k: v for k, v in base.items() if k != name})
    for name, prop in props.items():
        for value in _boundaries(prop):
            cases.append({**base, name: value})
        items = prop.get("items")
        if isinstance(items, dict) and items.get("properties"):
            item = {n: sample(p) for n, p in items["properties"].items() if n in items.get("required", [])}
            cases.append({**base, name: [item]})
            cases.append({**base, name: [{**item, "bogus": 1}]})
            for inner, inner_prop in items["properties"].items():
                for value in (None, "", sample(inner_prop)):
                    cases.append({**base, name: [{**item, inner: value}]})
    # every rule: each refused combination, built from the fields it names
    for branch in schema.get("not", {}).get("anyOf", []):
        fields = [f.split("/")[0] for f in branch.get("x-fields", [])]
        given = {f: sample(props[f]) for f in fields if f in props and sample(props[f]) is not None}
        cases.append({**base, **given})
        cases.append({k: v for k, v in base.items() if k not in fields})
    unique: dict[str, dict[str, Any]] = {}
    for case in cases:
        unique.setdefault(repr(sorted(case.items(), key=lambda kv: kv[0])), case)
    return list(unique.values())
