"""Trino's error model: standard error codes and the ``QueryError`` JSON shape."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import duckdb

# (code, type) of the standard codes trinosim produces, from Trino's StandardErrorCode.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "GENERIC_USER_ERROR": (0, "USER_ERROR"),
    "SYNTAX_ERROR": (1, "USER_ERROR"),
    "ABANDONED_QUERY": (2, "USER_ERROR"),
    "USER_CANCELED": (3, "USER_ERROR"),
    "NOT_FOUND": (5, "USER_ERROR"),
    "FUNCTION_NOT_FOUND": (6, "USER_ERROR"),
    "INVALID_FUNCTION_ARGUMENT": (7, "USER_ERROR"),
    "DIVISION_BY_ZERO": (8, "USER_ERROR"),
    "INVALID_CAST_ARGUMENT": (9, "USER_ERROR"),
    "NOT_SUPPORTED": (13, "USER_ERROR"),
    "INVALID_SESSION_PROPERTY": (14, "USER_ERROR"),
    "CATALOG_NOT_FOUND": (44, "USER_ERROR"),
    "SCHEMA_NOT_FOUND": (45, "USER_ERROR"),
    "TABLE_NOT_FOUND": (46, "USER_ERROR"),
    "COLUMN_NOT_FOUND": (47, "USER_ERROR"),
    "UNKNOWN_TRANSACTION": (20, "USER_ERROR"),
    "NOT_IN_TRANSACTION": (21, "USER_ERROR"),
    "TABLE_ALREADY_EXISTS": (50, "USER_ERROR"),
    "MISSING_CATALOG_NAME": (56, "USER_ERROR"),
    "MISSING_SCHEMA_NAME": (57, "USER_ERROR"),
    "TYPE_MISMATCH": (58, "USER_ERROR"),
    "GENERIC_INTERNAL_ERROR": (65536, "INTERNAL_ERROR"),
    "NO_NODES_AVAILABLE": (65541, "INTERNAL_ERROR"),
    "SERVER_STARTING_UP": (65548, "INTERNAL_ERROR"),
    "QUERY_QUEUE_FULL": (131074, "INSUFFICIENT_RESOURCES"),
    "EXCEEDED_TIME_LIMIT": (131075, "INSUFFICIENT_RESOURCES"),
}

_EXCEPTION_CLASS = {
    "USER_ERROR": "io.trino.spi.TrinoException",
    "INTERNAL_ERROR": "io.trino.spi.TrinoException",
    "INSUFFICIENT_RESOURCES": "io.trino.spi.TrinoException",
}


@dataclass
class TrinoError(Exception):
    """A query failure, raised anywhere during planning or execution."""

    name: str
    message: str

    def __post_init__(self) -> None:
        if self.name not in ERROR_CODES:
            raise ValueError(f"unknown Trino error name {self.name}")
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        code, error_type = ERROR_CODES[self.name]
        # errorLocation is left out on purpose: the CLI indexes into the SQL text with it,
        # and a location that is not exact makes the CLI itself crash.
        return {
            "message": self.message,
            "errorCode": code,
            "errorName": self.name,
            "errorType": error_type,
            "failureInfo": {
                "type": _EXCEPTION_CLASS[error_type],
                "message": self.message,
                "suppressed": [],
                "stack": [],
            },
        }


def canceled() -> TrinoError:
    return TrinoError("USER_CANCELED", "Query was canceled")


_TABLE_MISSING = re.compile(r'Table with name "?([^"\s!]+)"? does not exist', re.IGNORECASE)
_SCHEMA_MISSING = re.compile(r'Schema with name "?([^"\s!]+)"? does not exist', re.IGNORECASE)
_CATALOG_MISSING = re.compile(r'Catalog "?([^"\s!]+)"? does not exist', re.IGNORECASE)
_COLUMN_MISSING = re.compile(r'Referenced column "([^"]+)" not found', re.IGNORECASE)
_FUNCTION_MISSING = re.compile(r"Scalar Function with name (\S+) does not exist", re.IGNORECASE)


def from_duckdb(exc: Exception) -> TrinoError:
    """Translate a DuckDB exception into the Trino error a user would see for it."""
    text = str(exc).split("\n", 1)[0]
    text = re.sub(r"^[A-Za-z ]+ Error: ", "", text)
    if isinstance(exc, duckdb.ParserException):
        return TrinoError("SYNTAX_ERROR", text)
    if isinstance(exc, duckdb.CatalogException):
        for pattern, name, template in (
            (_TABLE_MISSING, "TABLE_NOT_FOUND", "Table '{}' does not exist"),
            (_SCHEMA_MISSING, "SCHEMA_NOT_FOUND", "Schema '{}' does not exist"),
            (_CATALOG_MISSING, "CATALOG_NOT_FOUND", "Catalog '{}' not found"),
            (_FUNCTION_MISSING, "FUNCTION_NOT_FOUND", "Function '{}' not registered"),
        ):
            match = pattern.search(text)
            if match:
                return TrinoError(name, template.format(match.group(1)))
        if "already exists" in text:
            return TrinoError("TABLE_ALREADY_EXISTS", text)
        return TrinoError("NOT_FOUND", text)
    if isinstance(exc, duckdb.BinderException):
        match = _COLUMN_MISSING.search(text)
        if match:
            return TrinoError("COLUMN_NOT_FOUND", f"Column '{match.group(1)}' cannot be resolved")
        if "No function matches" in text:
            return TrinoError("FUNCTION_NOT_FOUND", text)
        return TrinoError("TYPE_MISMATCH", text)
    if isinstance(exc, duckdb.ConversionException):
        return TrinoError("INVALID_CAST_ARGUMENT", text)
    if isinstance(exc, duckdb.InvalidInputException | duckdb.OutOfRangeException):
        return TrinoError("INVALID_FUNCTION_ARGUMENT", text)
    if isinstance(exc, duckdb.NotImplementedException):
        return TrinoError("NOT_SUPPORTED", text)
    if isinstance(exc, duckdb.Error):
        return TrinoError("GENERIC_USER_ERROR", text)
    return TrinoError("GENERIC_INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
