"""Published schemas and validation: every bad field at once, with pointers, before any request."""

from __future__ import annotations

import jsonschema
import pytest
from d365_test_acme import Echo

from d365_components.errors import InputValidationError
from d365_components.inputs import coerce_form_values, validate_inputs


def test_published_schema_is_2020_12_with_titles_hints_and_order() -> None:
    schema = Echo.input_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = schema["properties"]
    assert list(props) == ["message", "recordsPerPage", "fetchAll", "options", "apiKey", "mode"]
    assert [p["x-order"] for p in props.values()] == [1, 2, 3, 4, 5, 6]
    assert all(p["title"] and p["description"] for p in props.values())
    assert props["recordsPerPage"] == {**props["recordsPerPage"], "default": 100, "minimum": 1, "maximum": 5000}
    assert props["options"]["x-widget"] == "code" and props["options"]["x-language"] == "json"
    assert props["apiKey"]["writeOnly"] is True and props["apiKey"]["format"] == "password"
    assert props["apiKey"]["type"] == ["string", "null"]
    assert schema["required"] == ["message"]
    assert schema["additionalProperties"] is False


def test_all_errors_reported_at_once_with_pointers() -> None:
    with pytest.raises(InputValidationError) as info:
        validate_inputs(Echo.input_schema(), Echo.Inputs, {"recordsPerPage": 0, "mode": "medium", "bogus": 1})
    errors = {e.pointer: e.message for e in info.value.errors}
    assert errors == {
        "/message": "is required",
        "/recordsPerPage": "must be between 1 and 5000",
        "/mode": errors["/mode"],
        "/bogus": errors["/bogus"],
    }
    assert "expected format" in errors["/mode"]
    assert errors["/bogus"].startswith("is not a known input")
    assert "/recordsPerPage: must be between 1 and 5000" in str(info.value)


def test_form_strings_are_coerced_only_by_the_published_step() -> None:
    text = {"message": "hi", "recordsPerPage": "250", "fetchAll": "true", "options": '{"a": 1}', "apiKey": ""}
    # validation is exactly the schema's: text is not a number
    with pytest.raises(InputValidationError) as info:
        validate_inputs(Echo.input_schema(), Echo.Inputs, text)
    assert {e.pointer for e in info.value.errors} == {"/recordsPerPage", "/fetchAll", "/options"}
    typed = validate_inputs(Echo.input_schema(), Echo.Inputs, coerce_form_values(Echo.input_schema(), text))
    assert typed.records_per_page == 250 and typed.fetch_all is True and typed.options == {"a": 1}
    # a string field is never touched, an empty string for a non-string field means "not given"
    assert coerce_form_values(Echo.input_schema(), {"message": "100", "recordsPerPage": ""}) == {"message": "100"}


def test_wrong_types_are_named_plainly() -> None:
    with pytest.raises(InputValidationError) as info:
        validate_inputs(Echo.input_schema(), Echo.Inputs, {"message": "x", "recordsPerPage": "many", "fetchAll": "maybe"})
    errors = {e.pointer: e.message for e in info.value.errors}
    assert errors == {"/recordsPerPage": "must be a whole number", "/fetchAll": "must be true or false"}


def test_secrets_never_appear_in_repr() -> None:
    typed = validate_inputs(Echo.input_schema(), Echo.Inputs, {"message": "x", "apiKey": "top-secret-value"})
    assert "top-secret-value" not in repr(typed)
    assert typed.api_key.get_secret_value() == "top-secret-value"


def test_non_object_inputs_are_refused() -> None:
    with pytest.raises(InputValidationError, match="must be a JSON object"):
        validate_inputs(Echo.input_schema(), Echo.Inputs, ["not", "an", "object"])  # type: ignore[arg-type]


def test_malformed_json_text_says_where_it_breaks() -> None:
    with pytest.raises(InputValidationError) as info:
        validate_inputs(Echo.input_schema(), Echo.Inputs, {"message": "x", "options": '{"a": 1,}'})
    (error,) = info.value.errors
    assert error.pointer == "/options" and error.message.startswith("is not valid JSON (") and "line 1 column" in error.message


def test_plain_text_for_a_json_field_is_a_type_error_not_a_json_error() -> None:
    with pytest.raises(InputValidationError) as info:
        validate_inputs(Echo.input_schema(), Echo.Inputs, {"message": "x", "options": "name"})
    assert [(e.pointer, e.message) for e in info.value.errors] == [("/options", "must be an object")]


def test_enum_labels_follow_the_choices_and_ask_for_a_dropdown() -> None:
    from typing import Literal

    from d365_components.inputs import InputField, InputModel, publish_schema

    class Inputs(InputModel):
        status: Literal[4, 5] = InputField(4, title="Status", description="Why.", enum_labels={5: "Out-Sold", 4: "Canceled"})
        kinds: list[Literal["a", "b"]] = InputField([], title="Kinds", description="Which.", enum_labels={"a": "A", "b": "B"})

    props = publish_schema(Inputs)["properties"]
    assert props["status"]["x-enum-labels"] == ["Canceled", "Out-Sold"] and props["status"]["x-widget"] == "dropdown"
    assert props["kinds"]["items"]["x-enum-labels"] == ["A", "B"] and props["kinds"]["items"]["x-widget"] == "dropdown"


def test_enum_labels_must_name_every_choice() -> None:
    from typing import Literal

    from d365_components.inputs import InputField, InputModel, publish_schema

    class Inputs(InputModel):
        status: Literal[4, 5] = InputField(4, title="Status", description="Why.", enum_labels={4: "Canceled"})

    with pytest.raises(ValueError, match="do not match the choices"):
        publish_schema(Inputs)
