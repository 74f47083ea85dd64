"""The JSON writer of trinosim's plans: Trino's codec layout (Jackson's pretty printer) and Java's
doubles, byte for byte."""

from __future__ import annotations

import math

import pytest

from trinosim.plans.jackson import dumps, java_double


@pytest.mark.parametrize(
    ("value", "java"),
    [
        (25.0, "25.0"),
        (0.0, "0.0"),
        (1.5, "1.5"),
        (9999999.0, "9999999.0"),
        (10_000_000.0, "1.0E7"),
        (600_121_500.0, "6.001215E8"),
        (341_425_774_958.0, "3.41425774958E11"),
        (0.001, "0.001"),
        (0.0001, "1.0E-4"),
        (-2.5e9, "-2.5E9"),
    ],
)
def test_doubles_are_written_as_java_writes_them(value, java):
    assert java_double(value) == java


def test_layout_is_jacksons_default_pretty_printer():
    document = {
        "0": {
            "id": "9",
            "descriptor": {},
            "outputs": [{"type": "bigint", "name": "count"}],
            "details": [],
            "estimates": [{"outputRowCount": 1.0, "cpuCost": math.nan}],
            "names": ["a", "b"],
        }
    }
    assert dumps(document) == (
        "{\n"
        '  "0" : {\n'
        '    "id" : "9",\n'
        '    "descriptor" : { },\n'
        '    "outputs" : [ {\n'
        '      "type" : "bigint",\n'
        '      "name" : "count"\n'
        "    } ],\n"
        '    "details" : [ ],\n'
        '    "estimates" : [ {\n'
        '      "outputRowCount" : 1.0,\n'
        '      "cpuCost" : "NaN"\n'
        "    } ],\n"
        '    "names" : [ "a", "b" ]\n'
        "  }\n"
        "}"
    )


def test_infinities_and_escapes():
    assert dumps([math.inf, -math.inf]) == '[ "Infinity", "-Infinity" ]'
    assert dumps({"k": 'a "quoted"\nline'}) == '{\n  "k" : "a \\"quoted\\"\\nline"\n}'
