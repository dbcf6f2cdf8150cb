"""Ready-made UI schemas: the ``x-`` hints of an input schema mapped for rjsf and for JSON Forms.

A runtime that renders our forms with react-jsonschema-form or JSON Forms gets a good form without
writing the mapping: fields in ``x-order``, ``x-group`` sections (advanced ones collapsed), text
areas for long text and code, password fields for secrets, and the data source of each dropdown in
the options (``dataSource`` + ``dataSourceInputs``), for the runtime's widget to call
``runtime.fetch_choices``. :mod:`d365_components.vocabulary` says what each keyword means.
"""

from __future__ import annotations

from typing import Any

__all__ = ["jsonforms_ui_schema", "rjsf_ui_schema", "ui_schemas"]


def _types(prop: dict[str, Any]) -> set[str]:
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    return set(declared) if isinstance(declared, list) else set()


def _is_text(prop: dict[str, Any]) -> bool:
    """Text (maybe among other types, as JSON-or-text bodies): a textarea fits it; an object does not."""
    return "string" in _types(prop)


def _options(prop: dict[str, Any]) -> dict[str, Any]:
    """Renderer-neutral options: code language, data source, placeholder."""
    options: dict[str, Any] = {}
    if "x-language" in prop:
        options["language"] = prop["x-language"]
    if "x-data-source" in prop:
        options["dataSource"] = prop["x-data-source"]
        options["dataSourceInputs"] = prop.get("x-data-source-inputs", {})
    if "x-placeholder" in prop:
        options["placeholder"] = prop["x-placeholder"]
    return options


def _ordered(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    props = schema.get("properties", {})
    return sorted(props.items(), key=lambda item: item[1].get("x-order", 10**6))


def _rjsf_field(prop: dict[str, Any]) -> dict[str, Any]:
    ui: dict[str, Any] = {}
    widget = prop.get("x-widget")
    if prop.get("format") == "password" or prop.get("writeOnly"):
        ui["ui:widget"] = "password"
    elif widget in ("textarea", "code") and _is_text(prop):
        ui["ui:widget"] = "textarea"
        ui["ui:options"] = {"rows": 6 if widget == "code" else 3}
    if "x-placeholder" in prop:
        ui["ui:placeholder"] = prop["x-placeholder"]
    options = _options(prop)
    if prop.get("x-advanced"):
        options["advanced"] = True
    if options:
        ui["ui:options"] = {**ui.get("ui:options", {}), **options}
    items = prop.get("items")
    if isinstance(items, dict) and items.get("type") == "object" and "properties" in items:
        ui["items"] = rjsf_ui_schema(items, root=False)
    elif isinstance(items, dict) and not items.get("title"):
        ui["items"] = {"ui:label": False}  # a list of short texts: no "Columns-1" label per row
    return ui


def rjsf_ui_schema(schema: dict[str, Any], *, root: bool = True) -> dict[str, Any]:
    """The uiSchema for react-jsonschema-form: ``ui:order``, widgets and options per field.

    Groups go in ``ui:options.groups`` (group -> field names; ``collapsed`` for advanced ones), for a
    runtime's ObjectFieldTemplate to draw as sections; rjsf's default template ignores them.
    """
    ui: dict[str, Any] = {}
    order = [name for name, _ in _ordered(schema)]
    if order:
        ui["ui:order"] = [*order, "*"]
    groups: dict[str, dict[str, Any]] = {}
    for name, prop in _ordered(schema):
        field = _rjsf_field(prop)
        if field:
            ui[name] = field
        group = prop.get("x-group")
        if group:
            entry = groups.setdefault(group, {"fields": [], "collapsed": True})
            entry["fields"].append(name)
            entry["collapsed"] = entry["collapsed"] and bool(prop.get("x-advanced"))
    if groups and root:
        ui["ui:options"] = {"groups": groups}
    if root:
        ui["ui:submitButtonOptions"] = {"submitText": "Save"}
    return ui


def _jsonforms_control(name: str, prop: dict[str, Any], prefix: str = "#/properties") -> dict[str, Any]:
    control: dict[str, Any] = {"type": "Control", "scope": f"{prefix}/{name}"}
    options = _options(prop)
    widget = prop.get("x-widget")
    if widget in ("textarea", "code") and _is_text(prop):
        options["multi"] = True
    if prop.get("format") == "password" or prop.get("writeOnly"):
        options["format"] = "password"
    items = prop.get("items")
    if isinstance(items, dict) and items.get("type") == "object" and "properties" in items:
        options["detail"] = {
            "type": "VerticalLayout",
            "elements": [_jsonforms_control(n, p) for n, p in _ordered(items)],
        }
    if options:
        control["options"] = options
    return control


def jsonforms_ui_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The UI schema for JSON Forms: a vertical layout in ``x-order``, one Group per ``x-group``
    (advanced groups carry ``options.collapsed``), controls with their options."""
    elements: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for name, prop in _ordered(schema):
        control = _jsonforms_control(name, prop)
        if "object" in _types(prop) and prop.get("properties"):
            # vanilla JSON Forms has no object renderer: lay the pair out as a group of its fields
            control = {"type": "Group", "label": prop.get("title", name), "elements": [
                _jsonforms_control(sub, sub_prop, f"#/properties/{name}/properties") for sub, sub_prop in _ordered(prop)
            ]}
        group = prop.get("x-group")
        if not group:
            elements.append(control)
            continue
        if group not in groups:
            groups[group] = {"type": "Group", "label": group, "elements": [], "options": {"collapsed": True}}
            elements.append(groups[group])
        groups[group]["elements"].append(control)
        if not prop.get("x-advanced"):
            groups[group]["options"]["collapsed"] = False
    return {"type": "VerticalLayout", "elements": elements}


def ui_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """Both UI schemas of one input schema, as the manifest publishes them."""
    return {"rjsf": rjsf_ui_schema(schema), "jsonforms": jsonforms_ui_schema(schema)}
