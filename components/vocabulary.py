"""Our ``x-`` keywords, declared machine-readably: what each means and how a form renderer maps it.

Published schemas carry UI hints as ``x-`` keywords. They never change what is valid (every one is
an annotation), so a validator that does not know them may ignore them; a strict one (Ajv2020 with
``strict: true``) must be told they exist. :data:`KEYWORDS` is the declaration, published twice:

- as a JSON Schema vocabulary (``vocabulary.schema.json``: a meta-schema whose ``properties``
  say what value each keyword takes), which a strict Ajv loads with one ``addKeyword`` per entry::

      for (const [keyword, metaSchema] of Object.entries(vocabulary.properties))
        ajv.addKeyword({keyword, metaSchema})

- inside ``manifest.schema.json`` (``$defs/uiHints``), so a runtime reading a manifest finds them.

``renderers`` in each entry says how rjsf and JSON Forms show it; :mod:`d365_components.ui_schemas`
does exactly that for both.
"""

from __future__ import annotations

from typing import Any

__all__ = ["KEYWORDS", "VOCABULARY_ID", "vocabulary_schema"]

VOCABULARY_ID = "https://d365-components.dev/schemas/vocab/ui-hints-v1.json"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

_NAME = {"type": "string", "minLength": 1}

#: keyword -> (meaning, value schema, how a renderer maps it)
KEYWORDS: dict[str, dict[str, Any]] = {
    "x-order": {
        "meaning": "Position of the input in the form (1 = first), in declaration order.",
        "value": {"type": "integer", "minimum": 1},
        "renderers": "rjsf: ui:order; JSON Forms: the order of the VerticalLayout's elements.",
    },
    "x-widget": {
        "meaning": (
            "How to show the input: textarea (several lines of text), code (a code editor, see x-language), "
            "keyvalue (a list of name/value rows), list (a list of short texts), dropdown (choices, see "
            "x-enum-labels or x-data-source), any (a free value of any JSON type, typed as text)."
        ),
        "value": {"enum": ["textarea", "code", "keyvalue", "list", "dropdown", "any"]},
        "renderers": (
            "rjsf: ui:widget textarea for text with textarea/code; arrays and objects keep their own fields. "
            "JSON Forms: options.multi for text with textarea/code."
        ),
    },
    "x-language": {
        "meaning": "Language of the code editor for x-widget code: json, xml (FetchXML) or odata ($filter).",
        "value": {"enum": ["json", "xml", "odata"]},
        "renderers": "rjsf: ui:options.language; JSON Forms: options.language (a custom code renderer may use it).",
    },
    "x-data-source": {
        "meaning": "Key of the data source whose choices fill this input's dropdown (dynamics365.tables).",
        "value": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"},
        "renderers": (
            "Call runtime.fetch_choices(key, inputs) and show the [{label, value}] choices: rjsf ui:options.dataSource, "
            "JSON Forms options.dataSource; the text box stays usable while choices load."
        ),
    },
    "x-data-source-inputs": {
        "meaning": (
            "Inputs of the data source: name -> another input of the form (a sibling first, then a top-level "
            "input) or a literal written =value."
        ),
        "value": {"type": "object", "additionalProperties": {"type": "string"}},
        "renderers": "rjsf and JSON Forms: options.dataSourceInputs; re-fetch choices when a named input changes.",
    },
    "x-placeholder": {
        "meaning": "Hint text shown in an empty input.",
        "value": {"type": "string"},
        "renderers": "rjsf: ui:placeholder; JSON Forms: options.placeholder.",
    },
    "x-group": {
        "meaning": "Section heading the input sits under (Advanced, Paging, Retries...).",
        "value": _NAME,
        "renderers": "rjsf: a collapsed fieldset per group via the ui:groups option; JSON Forms: a Group element.",
    },
    "x-advanced": {
        "meaning": "Most flows leave this input alone: show it collapsed.",
        "value": {"type": "boolean"},
        "renderers": "rjsf: ui:options.advanced (collapsed section); JSON Forms: in a Group with options.collapsed.",
    },
    "x-enum-labels": {
        "meaning": "A label per choice of the enum beside it, in the same order (the same labels as oneOf const/title).",
        "value": {"type": "array", "items": {"type": "string"}},
        "renderers": "Both renderers label choices from oneOf const/title out of the box; x-enum-labels is the same list.",
    },
    "x-fields": {
        "meaning": (
            "In a rule (a combination refused under not/anyOf): the inputs a form marks when the combination "
            "is given; the rule's description is the message."
        ),
        "value": {"type": "array", "items": {"type": "string"}},
        "renderers": "Show the rule's description on each named input (rjsf transformErrors; JSON Forms additionalErrors).",
    },
    # generated table forms (Get Table Form): what each column is in Dataverse
    "x-logical-name": {
        "meaning": "Table forms: the logical name of the table or column.",
        "value": {"type": "string"},
        "renderers": "None (information).",
    },
    "x-entity-set": {
        "meaning": "Table forms: the table's entity set name (the URL segment).",
        "value": {"type": "string"},
        "renderers": "None (information).",
    },
    "x-table": {
        "meaning": "Table forms: the table a generated form writes to.",
        "value": {"type": "string"},
        "renderers": "None (information).",
    },
    "x-operation": {
        "meaning": "Table forms: create or update (what the generated form is for).",
        "value": {"type": "string"},
        "renderers": "None (information).",
    },
    "x-dataverse-type": {
        "meaning": "Table forms: the column's Dataverse AttributeType (String, Money, Lookup...).",
        "value": {"type": "string"},
        "renderers": "None (information).",
    },
    "x-dataverse-format": {
        "meaning": "Table forms: the column's Dataverse format (Email, Url, DateOnly...).",
        "value": {"type": "string"},
        "renderers": "None (information).",
    },
    "x-required-level": {
        "meaning": "Table forms: the column's RequiredLevel (None, Recommended, ApplicationRequired).",
        "value": {"type": "string"},
        "renderers": "Recommended: a renderer may mark the field as suggested.",
    },
    "x-precision": {
        "meaning": "Table forms: digits after the decimal point of a Decimal or Money column.",
        "value": {"type": "integer"},
        "renderers": "A number widget's step (10^-precision).",
    },
    "x-lookup-targets": {
        "meaning": "Table forms: the tables a lookup column can point to (logical names).",
        "value": {"type": "array", "items": {"type": "string"}},
        "renderers": "A record picker per target (dynamics365.records).",
    },
}


def vocabulary_schema() -> dict[str, Any]:
    """The vocabulary as a 2020-12 meta-schema: one property per keyword, with its value's schema."""
    return {
        "$schema": DRAFT,
        "$id": VOCABULARY_ID,
        "title": "d365-components UI hints",
        "description": (
            "Annotation keywords of d365-components input schemas. None changes what is valid. Load into a "
            "strict Ajv2020 with ajv.addKeyword({keyword, metaSchema}) for each entry of properties."
        ),
        "type": ["object", "boolean"],
        "properties": {
            keyword: {**entry["value"], "description": f"{entry['meaning']} Renderers: {entry['renderers']}"}
            for keyword, entry in KEYWORDS.items()
        },
    }
