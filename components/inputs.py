"""Input models, their published JSON Schema, and validation against exactly that schema.

A definition declares its inputs as a pydantic model (``class Inputs(InputModel)``) whose fields
are made with :func:`InputField`. From it we publish one JSON Schema (draft 2020-12) that a UI
renders as a form and that :func:`validate_inputs` checks raw inputs against with jsonschema, so
the UI and the runtime can never disagree. Field names are snake_case in Python and camelCase on
the wire (``entity_type`` <-> ``entityType``).

The published schema is the whole contract: a rule between fields (exactly one of ``entityId`` and
``alternateKey``) is written into it with :func:`forbidden` combinations, published as
``not: {anyOf: [...]}``, so Ajv and jsonschema refuse exactly what the runtime refuses; pydantic
validators only re-state those rules. Formats are checked as ajv-formats checks them
(``date-time`` needs an offset: ``2025-06-30T09:00:00Z``).

Forms send everything as text. :func:`coerce_form_values` is the one, published step where text
becomes the declared type: ``"100"`` -> 100, ``"true"`` -> True, ``'{"a": 1}'`` -> {"a": 1} for
object/array fields, and ``""`` for a non-string field means "not given". A runtime calls it on form
input BEFORE validation; :func:`validate_inputs` never coerces, so its verdict is exactly Ajv's.
"""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUndefined

from d365_components.errors import FieldError, InputValidationError

__all__ = [
    "InputField",
    "InputModel",
    "ANY_VALUE_TYPES",
    "absent",
    "coerce_form_values",
    "equals",
    "exactly_one",
    "forbidden",
    "given",
    "rules",
    "publish_schema",
    "schema_problems",
    "validate_inputs",
]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_VALIDATOR = jsonschema.Draft202012Validator
_FORMATS = _VALIDATOR.FORMAT_CHECKER

#: the type list of a free value (``widget="any"``): every JSON type, text first so forms show a text box
ANY_VALUE_TYPES = ["string", "number", "integer", "boolean", "null", "object", "array"]

#: ``date-time`` as both ajv-formats and jsonschema (rfc3339-validator) accept it: a ``T`` and an offset
DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"


class InputModel(BaseModel):
    """Base of every ``Inputs`` model: unknown fields are refused, camelCase on the wire."""

    # defer_build: a model's validator and schema are built on first use, not at import, so a
    # process that runs one action does not pay for the other fifty-five (cold start, issue 16)
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, defer_build=True
    )


def InputField(
    default: Any = PydanticUndefined,
    *,
    title: str,
    description: str,
    examples: list[Any] | None = None,
    widget: str | None = None,
    language: str | None = None,
    data_source: str | None = None,
    data_source_inputs: dict[str, str] | None = None,
    placeholder: str | None = None,
    group: str | None = None,
    advanced: bool = False,
    enum_labels: dict[Any, str] | None = None,
    alias: str | None = None,
    schema: dict[str, Any] | None = None,
    **constraints: Any,
) -> Any:
    """A form field: title and description are required; UI hints become ``x-`` keywords.

    Args:
        widget: how to render it (``textarea``, ``code``, ``keyvalue``, ``list``, ``dropdown``,
            ``any`` for a free value of any JSON type).
        language: the code editor's language for ``widget="code"`` (``json``, ``xml``, ``odata``).
        data_source: key of the data source that fills its dropdown (``dynamics365.tables``).
        data_source_inputs: which other inputs feed the data source (``{"table": "entityType"}``).
        group: a section heading in the form; advanced: collapsed by default.
        enum_labels: a label per choice (``{4: "Lost"}``), in the order of the choices. Published as
            ``x-enum-labels`` (a list parallel to ``enum``, as generated table forms do) with a
            dropdown widget, on the list's ``items`` when the field is a list of choices.
        schema: more JSON Schema keywords for rules pydantic cannot say (``propertyNames``...); a
            keyword given as None is removed (``{"anyOf": None, "type": [...]}`` replaces a union).
    """
    hints: dict[str, Any] = {
        "x-widget": widget,
        "x-language": language,
        "x-data-source": data_source,
        "x-data-source-inputs": data_source_inputs,
        "x-placeholder": placeholder,
        "x-group": group,
        "x-advanced": advanced or None,
    }
    extra: dict[str, Any] = {k: v for k, v in hints.items() if v is not None}
    if widget == "any":
        extra["type"] = list(ANY_VALUE_TYPES)
    dropped = [key for key, value in (schema or {}).items() if value is None]
    extra.update({key: value for key, value in (schema or {}).items() if value is not None})
    if enum_labels is not None:
        extra.setdefault("x-widget", "dropdown")
    hook: Any = extra or None
    if enum_labels:
        hook = _with_enum_labels(extra, enum_labels)
    elif dropped:
        hook = _without(extra, dropped)
    return Field(
        default,
        title=title,
        description=description,
        examples=examples,
        alias=alias,
        json_schema_extra=hook,
        **constraints,
    )


def _with_enum_labels(extra: dict[str, Any], labels: dict[Any, str]) -> Any:
    """A schema hook that adds the hints and puts ``x-enum-labels`` beside the choices."""

    def add(schema: dict[str, Any]) -> None:
        schema.update(extra)
        target = schema["items"] if schema.get("type") == "array" else schema
        choices = target.get("enum")
        if choices is not None and set(map(_key, choices)) != set(map(_key, labels)):
            raise ValueError(f"enum_labels {list(labels)} do not match the choices {choices}")
        target["x-enum-labels"] = [labels[c] for c in choices] if choices is not None else list(labels.values())
        target.setdefault("x-widget", "dropdown")

    return add


def _without(extra: dict[str, Any], dropped: list[str]) -> Any:
    """A schema hook that adds keywords and removes those given as None (``{"anyOf": None}``)."""

    def change(schema: dict[str, Any]) -> None:
        schema.update(extra)
        for key in dropped:
            schema.pop(key, None)

    return change


def _key(value: Any) -> Any:
    return getattr(value, "value", value)


# -- rules between fields, written into the schema --------------------------------------------


def given(name: str) -> dict[str, Any]:
    """A condition: input ``name`` is present and not null (absent and null both mean "not given")."""
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


def absent(name: str) -> dict[str, Any]:
    """A condition: input ``name`` is not given."""
    return {"not": given(name)}


def equals(name: str, *values: Any) -> dict[str, Any]:
    """A condition: input ``name`` is given and is one of ``values``."""
    return {"required": [name], "properties": {name: {"enum": list(values)} if len(values) > 1 else {"const": values[0]}}}


def forbidden(message: str, fields: list[str], *conditions: dict[str, Any]) -> dict[str, Any]:
    """One combination of inputs that is refused: all ``conditions`` hold. ``fields`` are the inputs
    a form marks with ``message`` (published as ``x-fields`` and ``description``)."""
    return {"description": message, "x-fields": fields, "allOf": list(conditions)}


def exactly_one(a: str, b: str) -> list[dict[str, Any]]:
    """Refuse neither and both of two inputs."""
    return [
        forbidden(f"give {a} or {b} (exactly one)", [a, b], absent(a), absent(b)),
        forbidden(f"give {a} or {b}, not both", [a, b], given(a), given(b)),
    ]


def rules(*refused: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """The schema keywords of a model's rules, for ``ConfigDict(json_schema_extra=rules(...))``:
    ``not: {anyOf: [combination, ...]}`` refuses every listed combination."""
    flat: list[dict[str, Any]] = []
    for item in refused:
        flat.extend(item if isinstance(item, list) else [item])
    return {"not": {"anyOf": flat}}


def publish_schema(model: type[BaseModel], *, title: str | None = None) -> dict[str, Any]:
    """The JSON Schema a form renders and validation uses: refs inlined, nullables flattened,
    fields numbered in declaration order (``x-order``)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _simplify(_inline(raw, defs))
    schema.pop("title", None)
    published: dict[str, Any] = {"$schema": DRAFT}
    if title:
        published["title"] = title
    published.update(schema)
    published.setdefault("type", "object")
    published.setdefault("properties", {})
    published["additionalProperties"] = False
    for order, prop in enumerate(published["properties"].values(), start=1):
        prop["x-order"] = order
    return published


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node and node["$ref"].startswith("#/$defs/"):
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **rest}, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _simplify(node: Any) -> Any:
    """Turn pydantic's ``anyOf: [X, {type: null}]`` into X with a nullable type."""
    if isinstance(node, list):
        return [_simplify(v) for v in node]
    if not isinstance(node, dict):
        return node
    # rules (under not) are written by hand, exactly as meant: leave them as they are
    node = {k: v if k == "not" else _simplify(v) for k, v in node.items()}
    if node.get("format") == "date-time":
        node.setdefault("pattern", DATE_TIME_PATTERN)
    variants = node.get("anyOf")
    plain = [{"type": "object", "additionalProperties": True}, {"type": "array", "items": {}}]
    if isinstance(variants, list) and all(v in plain or set(v) == {"type"} for v in variants) and len(variants) > 2:
        # a union of bare types is a type list (forms render it; rjsf cannot match bare objects in anyOf)
        types = sorted((v["type"] for v in variants), key=lambda t: (t != "string", t == "null"))
        return {**{k: v for k, v in node.items() if k != "anyOf"}, "type": types}
    if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
        other = next(v for v in variants if v != {"type": "null"})
        if isinstance(other.get("type"), str):
            merged = {**other, **{k: v for k, v in node.items() if k != "anyOf"}}
            merged["type"] = [other["type"], "null"]
            if merged.get("format") == "date-time":
                merged.setdefault("pattern", DATE_TIME_PATTERN)
            return _labelled(merged)
    # Nested models: keep form titles on fields, drop pydantic's class-name titles on objects.
    if node.get("type") == "object" and "properties" in node:
        node.setdefault("additionalProperties", False)
    return _labelled(node)


def _labelled(node: dict[str, Any]) -> dict[str, Any]:
    """Labelled choices as ``oneOf`` of ``const`` + ``title``: rjsf and JSON Forms both show that as
    a dropdown of labels out of the box (with ``enum`` they show raw codes). ``x-enum-labels`` stays."""
    labels, choices = node.get("x-enum-labels"), node.get("enum")
    if isinstance(labels, list) and isinstance(choices, list) and len(labels) == len(choices):
        node = {k: v for k, v in node.items() if k != "enum"}
        node["oneOf"] = [{"const": c, "title": label} for c, label in zip(choices, labels, strict=True)]
        if "type" not in node:  # every property has a type (a choice of null too)
            found = sorted({_json_type(c) for c in choices}, key=lambda t: t == "null")
            node["type"] = found[0] if len(found) == 1 else found
    return node


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "string")


def schema_problems(schema: dict[str, Any], *, where: str) -> list[str]:
    """Why ``schema`` cannot be published: not valid 2020-12, or a field lacks title/description."""
    problems = [f"{where}: {e.message}" for e in _VALIDATOR(_VALIDATOR.META_SCHEMA).iter_errors(schema)]
    for name, prop in schema.get("properties", {}).items():
        for keyword in ("title", "description"):
            if not prop.get(keyword):
                problems.append(f"{where}: input '{name}' has no {keyword}")
    return problems


def _types(prop: dict[str, Any]) -> set[str]:
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    found: set[str] = set()
    for variant in prop.get("anyOf", []) + prop.get("oneOf", []):
        found |= _types(variant)
    return found


def _coerce(value: str, types: set[str]) -> Any:
    if "string" in types:
        return value
    text = value.strip()
    if text == "":
        return None
    if "boolean" in types and text.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return text.lower() in {"true", "1", "yes"}
    if "integer" in types:
        try:
            return int(text)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if types & {"object", "array"}:
        try:
            parsed = json.loads(text)
        except ValueError:
            return value
        if ("object" in types and isinstance(parsed, dict)) or (
            "array" in types and isinstance(parsed, list)
        ):
            return parsed
    return value


def coerce_form_values(schema: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Convert text a form sent into the declared types (top-level fields only).

    An empty string for a field that is not a string is treated as absent, so the default applies.
    """
    properties = schema.get("properties", {})
    coerced: dict[str, Any] = {}
    for name, value in raw.items():
        prop = properties.get(name)
        if prop is not None and isinstance(value, str):
            types = _types(prop)
            if types and "string" not in types:
                converted = _coerce(value, types)
                if converted is None and "null" not in types:
                    continue
                value = converted
        coerced[name] = value
    return coerced


def _pointer(path: Any) -> str:
    return "".join(f"/{part}" for part in path)


def _type_phrase(expected: Any) -> str:
    names = {
        "integer": "a whole number",
        "number": "a number",
        "boolean": "true or false",
        "string": "text",
        "object": "an object",
        "array": "a list",
        "null": "empty",
    }
    if isinstance(expected, list):
        return " or ".join(names.get(str(t), str(t)) for t in expected)
    return names.get(expected, str(expected))


def _refused(pointer: str, rule: dict[str, Any], instance: Any) -> list[tuple[str, str]]:
    """The fields and messages of the combinations in a ``not`` rule that ``instance`` matches."""
    found: list[tuple[str, str]] = []
    for branch in rule.get("anyOf", [rule]):
        if _VALIDATOR(branch, format_checker=_FORMATS).is_valid(instance):
            message = str(branch.get("description") or "is not allowed together with the other inputs")
            for name in branch.get("x-fields") or [""]:  # none: the object itself
                found.extend((f"{pointer}/{where}".rstrip("/"), message) for where in _expand(name, branch, instance))
    return found or [(pointer, "is not allowed")]


def _expand(name: str, branch: dict[str, Any], instance: Any) -> list[str]:
    """``parties/*/role`` -> the positions of the items the rule's ``contains`` matched."""
    if "/*/" not in name:
        return [name]
    array, rest = name.split("/*/", 1)
    items = instance.get(array, []) if isinstance(instance, dict) else []
    conditions = [c.get("properties", {}).get(array, {}).get("contains") for c in branch.get("allOf", [])]
    contains: dict[str, Any] = next((c for c in conditions if c is not None), {})
    checker = _VALIDATOR(contains, format_checker=_FORMATS)
    return [f"{array}/{index}/{rest}" for index, item in enumerate(items) if checker.is_valid(item)] or [array]


def _messages(error: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """(pointer, plain message) pairs for one jsonschema error."""
    pointer = _pointer(error.absolute_path)
    # jsonschema types these as "maybe unset"; an error raised by validation always has them
    kw: Any = error.validator
    schema: Any = error.schema
    value: Any = error.validator_value
    if kw == "not" and isinstance(value, dict):
        return _refused(pointer, value, error.instance)
    if kw == "oneOf" and all(isinstance(v, dict) and "const" in v for v in value):
        return [(pointer, "must be one of: " + ", ".join(json.dumps(v["const"]) for v in value))]
    if kw in ("anyOf", "oneOf") and error.context:
        # the variant of the value's own type says best what is wrong (a text that is not a GUID)
        fitting = [e for e in error.context if _VALIDATOR(
            {"type": value[e.schema_path[0]].get("type", [])}).is_valid(error.instance)] if all(
            isinstance(v, dict) and "type" in v for v in value) else []
        if fitting:
            return [m for e in fitting for m in _messages(e)]
    if kw == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return [(f"{pointer}/{missing}", "is required")]
    if kw == "additionalProperties":
        extras = sorted(set(cast(dict[str, Any], error.instance)) - set(schema.get("properties", {})))
        known = ", ".join(schema.get("properties", {})) or "none"
        return [(f"{pointer}/{extras[0] if extras else ''}", f"is not a known input (known: {known})")]
    if kw in {"minimum", "maximum"} and "minimum" in schema and "maximum" in schema:
        return [(pointer, f"must be between {schema['minimum']} and {schema['maximum']}")]
    phrases = {
        "type": lambda: f"must be {_type_phrase(value)}",
        "minimum": lambda: f"must be at least {value}",
        "maximum": lambda: f"must be at most {value}",
        "exclusiveMinimum": lambda: f"must be greater than {value}",
        "exclusiveMaximum": lambda: f"must be less than {value}",
        "minLength": lambda: "must not be empty" if value == 1 else f"must be at least {value} characters",
        "maxLength": lambda: f"must be at most {value} characters",
        "minItems": lambda: "must not be empty" if value == 1 else f"must have at least {value} items",
        "maxItems": lambda: f"must have at most {value} items",
        "enum": lambda: "must be one of: " + ", ".join(json.dumps(v) for v in value),
        "const": lambda: f"must be {json.dumps(value)}",
        "pattern": lambda: "must be a GUID such as 00000000-0000-0000-0000-000000000000"
        if "[0-9a-fA-F]{8}-" in str(value)
        else "must be a date and time with an offset, such as 2025-06-30T09:00:00Z"
        if value == DATE_TIME_PATTERN
        else f"does not have the expected format ({schema.get('description') or value})",
        "format": lambda: {
            "uuid": "must be a GUID such as 00000000-0000-0000-0000-000000000000",
            "date-time": "must be a date and time with an offset, such as 2025-06-30T09:00:00Z",
            "date": "must be a date such as 2025-06-30",
        }.get(value, f"must be a valid {value}"),
        "minProperties": lambda: "must not be empty",
    }
    phrase: Any = phrases.get(kw)
    return [(pointer, str(phrase()) if phrase else error.message)]


def _malformed_json(schema: dict[str, Any], data: dict[str, Any]) -> list[tuple[str, str]]:
    """Text in a JSON-only field (object or list) that does not parse: say where it breaks."""
    found = []
    for name, value in data.items():
        types = _types(schema.get("properties", {}).get(name, {}))
        looks_like_json = isinstance(value, str) and value.lstrip()[:1] in ("{", "[")
        if looks_like_json and types & {"object", "array"} and "string" not in types:
            try:
                json.loads(value)
            except json.JSONDecodeError as exc:
                where = f" at line {exc.lineno} column {exc.colno}"
                found.append((f"/{name}", f"is not valid JSON ({getattr(exc, 'msg', exc)}{where})"))
    return found


def validate_inputs(
    schema: dict[str, Any], model: type[BaseModel], raw: dict[str, Any] | None, *, subject: str = "inputs"
) -> BaseModel:
    """Validate ``raw`` against ``schema`` exactly (formats checked, nothing coerced), collecting EVERY
    error, then build the typed model. Form text is turned into numbers and booleans beforehand, by
    :func:`coerce_form_values`, when the runtime chooses to.

    Raises:
        InputValidationError: with one :class:`FieldError` per failing field.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputValidationError([FieldError("", "inputs must be a JSON object")], subject=subject)
    data = raw
    validator = _VALIDATOR(schema, format_checker=_FORMATS)
    errors: dict[str, str] = dict(_malformed_json(schema, data))
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        for pointer, message in _messages(error):
            errors.setdefault(pointer, message)
    if errors:
        raise InputValidationError([FieldError(p, m) for p, m in errors.items()], subject=subject)
    try:
        return model.model_validate(data)
    except InputValidationError as exc:  # a cross-field rule that names its fields
        raise InputValidationError(exc.errors, subject=subject) from None
    except ValidationError as exc:
        # Cross-field rules (model validators) live in the model; report them the same way.
        fields = []
        for item in exc.errors():
            pointer = _pointer(item.get("loc", ()))
            message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
            fields.append(FieldError(pointer, message))
        raise InputValidationError(fields, subject=subject) from None
