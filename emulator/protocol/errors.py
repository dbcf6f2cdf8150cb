"""Dataverse error responses: one exception type, the canonical codes, and the body they become.

Every failure inside the data plane is raised as `DataverseError(status, code, message)` and
turned into `{"error":{"code":"0x...","message":"..."}}` in one place (app.dispatch), so the
shape never drifts. Codes and wordings follow reference/dataverse-web-api.md §9.3/§9.4.
"""

from __future__ import annotations

import json

ODATA_ERROR = "0x0"                       # OData parse errors, unknown properties
INVALID_ARGUMENT = "0x80040203"
OBJECT_DOES_NOT_EXIST = "0x80040217"
UNEXPECTED = "0x80040216"
DUPLICATE_RECORD = "0x80040237"
INVALID_OPERATION = "0x8004023b"
VALIDATION = "0x80044331"
OPTION_OUT_OF_RANGE = "0x8004431a"
INVALID_STATE_STATUS = "0x80048408"
CONCURRENCY_MISMATCH = "0x80060882"
QUERY_NOT_SUPPORTED = "0x80060888"
RESOURCE_NOT_FOUND = "0x8006088a"
DUPLICATE_ENTITY_KEY = "0x80060892"
NOT_SUPPORTED = "0x80040315"
NOT_A_MEMBER = "0x80072560"


class DataverseError(Exception):
    """A failure with the HTTP status, Dataverse code and message the client will see."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def bad_request(message: str, code: str = ODATA_ERROR) -> DataverseError:
    return DataverseError(400, code, message)


def segment_not_found(segment: str) -> DataverseError:
    return DataverseError(404, RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'.")


def record_not_found(table: str, row_id: str) -> DataverseError:
    return DataverseError(404, OBJECT_DOES_NOT_EXIST, f"Entity '{table}' With Id = {row_id} Does Not Exist")


def key_not_found(table: str) -> DataverseError:
    return DataverseError(404, OBJECT_DOES_NOT_EXIST, f"A record with the specified key values does not exist in {table} entity")


def unknown_property(name: str, table: str) -> DataverseError:
    return bad_request(f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{table}'.")


def unknown_body_property(name: str, table: str) -> DataverseError:
    return bad_request(
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{table}'. "
        "Make sure to only use property names that are defined by the type."
    )


def version_mismatch() -> DataverseError:
    return DataverseError(412, CONCURRENCY_MISMATCH,
                          "The version of the existing record doesn't match the RowVersion property provided.")


def already_exists() -> DataverseError:
    return DataverseError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")


def duplicate_key() -> DataverseError:
    return DataverseError(412, DUPLICATE_RECORD, "Cannot insert duplicate key.")


def duplicate_entity_key(table: str, key_name: str, columns: list[str]) -> DataverseError:
    cols = ",".join(columns)
    return DataverseError(
        412, DUPLICATE_ENTITY_KEY,
        f"A record that has the attribute values {cols} already exists. The entity key {key_name} "
        "requires that this set of attributes contains unique values. Select unique values and try again.",
    )


def method_not_allowed(method: str) -> DataverseError:
    return DataverseError(405, NOT_SUPPORTED, f"The HTTP method '{method}' is not allowed for this resource.")


def not_supported(message: str) -> DataverseError:
    return bad_request(message, QUERY_NOT_SUPPORTED)


def unexpected() -> DataverseError:
    return DataverseError(500, UNEXPECTED, "An unexpected error occurred.")
