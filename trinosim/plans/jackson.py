"""JSON written the way Trino writes its plans: airlift's codec, that is Jackson's default pretty printer.

The layout a client sees byte for byte:

- objects one member a line, indented two spaces a level, ``"key" : value``; an empty object is ``{ }``;
- arrays on the line they open: ``[ 1, 2 ]``, ``[ {`` ... ``}, {`` ... ``} ]``; an empty array is ``[ ]``
  (an array does not indent what it holds; only objects do);
- doubles as Java prints them (``Double.toString``): ``25.0``, ``0.5``, 600121500 as ``6.001215E8``:
  scientific below 10^-3 and from 10^7 up;
- NaN and the infinities as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (Jackson's
  ``WRITE_NAN_AS_STRINGS``, on by default and left on by airlift);
- strings escaped as Jackson does: quote, backslash and control characters; other characters as they are.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

_INDENT = "  "


def java_double(value: float) -> str:
    """``value`` as Java's ``Double.toString`` writes it (finite values only)."""
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(float(value))
        return text if ("." in text or "e" in text) else f"{text}.0"
    # Shortest digits that read back as the same double, as Java (since JDK 19) and Python both pick.
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(str(d) for d in digits)
    power = exponent + len(text) - 1
    mantissa = f"{text[0]}.{text[1:] or '0'}"
    return f"{'-' if sign else ''}{mantissa}E{power}"


def _number(value: float) -> str:
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return java_double(value)


def _write(value: Any, level: int, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append("{ }")
            return
        out.append("{")
        inner = _INDENT * (level + 1)
        for position, (key, item) in enumerate(value.items()):
            out.append("," if position else "")
            out.append(f"\n{inner}{_string(str(key))} : ")
            _write(item, level + 1, out)
        out.append(f"\n{_INDENT * level}}}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[ ]")
            return
        out.append("[ ")
        for position, item in enumerate(value):
            if position:
                out.append(", ")
            _write(item, level, out)
        out.append(" ]")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, int):
        out.append(str(value))
    elif value is None:
        out.append("null")
    else:
        out.append(_string(str(value)))


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def dumps(value: Any) -> str:
    """``value`` (dicts, lists, strings, floats, ints, bools, None) in Jackson's pretty layout."""
    out: list[str] = []
    _write(value, 0, out)
    return "".join(out)
